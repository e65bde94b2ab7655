"""``tashi-cm`` serves OCCI on its own listener (``[OCCI]``), here with TLS from ``certFile``
and ``keyFile``: the admin the cluster manager made answers HTTP Basic over HTTPS, and the
listener says ``OCCI/1.2`` and nothing of uvicorn; the EC2 API listens beside it."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tashi.devcluster.harness import Style, admin_login
from tashi.devcluster.processes import Daemon
from tashi.runtime.ports import free_port


def _certificate(where: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = where / "occi.pem", where / "occi.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def cm(tmp_path: Path) -> Iterator[tuple[Daemon, int, Path, int]]:
    cert_file, key_file = _certificate(tmp_path)
    (tmp_path / "vfs" / "images").mkdir(parents=True)
    port, occi_port, ec2_port = free_port(), free_port(), free_port()
    style = Style()
    config = style.write_config(
        tmp_path / "cm.cfg",
        {
            "ClusterManager": {"stateDir": tmp_path / "cm-state"},
            "ClusterManagerService": {"host": "127.0.0.1", "port": port},
            "Vfs": {"prefix": tmp_path / "vfs"},
            "Ec2": {"port": ec2_port},
            "OCCI": {"port": occi_port, "certFile": cert_file, "keyFile": key_file},
        },
    )
    daemon = style.daemon("tashi-cm", "tashi-cm", tmp_path, config, port)
    daemon.start()
    try:
        yield daemon, occi_port, cert_file, ec2_port
    finally:
        daemon.stop()


def test_the_cluster_manager_serves_occi_over_tls(
    cm: tuple[Daemon, int, Path, int], tmp_path: Path
) -> None:
    _, port, cert_file, ec2_port = cm
    login = admin_login(tmp_path)
    with httpx.Client(
        base_url=f"https://127.0.0.1:{port}",
        verify=ssl.create_default_context(cafile=str(cert_file)),
        auth=(login["username"], login["password"]),
    ) as http:
        reply = http.get("/-/", headers={"Accept": "application/occi+json"})
        assert reply.status_code == 200, reply.text
        assert reply.headers.get_list("server") == [reply.headers["server"]]
        assert reply.headers["server"].endswith("OCCI/1.2")
        assert "uvicorn" not in reply.headers["server"]
        assert {k["term"] for k in reply.json()["kinds"]} >= {"compute", "network", "storage"}
        assert http.get("/compute/", auth=("admin", "wrong")).status_code == 401
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"http://127.0.0.1:{port}/-/")  # no plain HTTP on a TLS listener
    ec2 = httpx.get(f"http://127.0.0.1:{ec2_port}/")  # the EC2 API beside it, as before
    assert ec2.status_code == 401 and "<Code>AuthFailure</Code>" in ec2.text


def test_a_user_mixin_outlives_a_restart_of_the_cluster_manager(
    cm: tuple[Daemon, int, Path, int], tmp_path: Path
) -> None:
    daemon, port, cert_file, _ = cm
    login = admin_login(tmp_path)
    scheme = "http://example.com/occi/sla#"
    mixin = f'gold; scheme="{scheme}"; class="mixin"; location="/mixin/gold/"; title="SLA gold"'

    def client() -> httpx.Client:
        return httpx.Client(
            base_url=f"https://127.0.0.1:{port}",
            verify=ssl.create_default_context(cafile=str(cert_file)),
            auth=(login["username"], login["password"]),
        )

    with client() as http:
        made = http.post("/-/", headers={"Content-Type": "text/occi", "Category": mixin})
        assert made.status_code == 200, made.text
    assert (tmp_path / "cm-state" / "occi-mixins.json").stat().st_mode & 0o777 == 0o600
    daemon.stop()
    daemon.start()
    with client() as http:
        model = http.get("/-/", headers={"Accept": "application/occi+json"}).json()
        mine = [m for m in model["mixins"] if m["scheme"] == scheme]
        assert [(m["term"], m["location"], m["title"]) for m in mine] == [
            ("gold", "/mixin/gold/", "SLA gold")
        ]
