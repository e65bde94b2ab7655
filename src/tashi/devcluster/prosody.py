"""A real XMPP server for the tests and ``tashi-cluster start --xmpp``: Debian's prosody, run
by the project in a directory of its own.

``Prosody(root)`` writes ``root/prosody.cfg.lua`` (one virtual host ``domain`` with a pubsub
component ``pubsub.<domain>``, client connections only, STARTTLS required, messages to an
account that is offline kept until it logs in), a self-signed
certificate for both names (``ca_file``: what the clients check the server against), and keeps
its accounts and data under ``root/data``. ``register`` makes an account (``prosodyctl
register``, which writes the data files directly); ``start`` runs ``prosody -F`` as a
``processes.Daemon`` (on ``host:port``, in ``netns`` if given) and waits until it listens;
``stop`` ends it by pid, ``kill`` crashes it, ``start`` again brings it back with the same
accounts. Nothing is left outside ``root``, which the caller removes.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tashi.devcluster import processes
from tashi.domain.errors import BackendFailure, Dependency, InvalidState
from tashi.runtime.ports import free_port

PROSODY = "prosody"
PROSODYCTL = "prosodyctl"
READY = "Activated service 'c2s' on ["  # "... on no ports": it could not listen
DEFAULT_DOMAIN = "tashi.test"


def installed() -> bool:
    return shutil.which(PROSODY) is not None and shutil.which(PROSODYCTL) is not None


def _path(program: str) -> str:
    """The program's absolute path (a daemon in a namespace is exec'd without a PATH search)."""
    return shutil.which(program) or program


@dataclass
class Prosody:
    root: Path
    domain: str = DEFAULT_DOMAIN
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free loopback port
    netns: str | None = None
    startup_timeout: float = 30.0
    admins: tuple[str, ...] = ()  # JIDs that own the pubsub service (may create nodes)
    daemon: processes.Daemon | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not installed():
            raise InvalidState("prosody is not installed: apt-get install prosody")
        if self.port == 0:
            self.port = free_port(self.host)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "data").mkdir(exist_ok=True, mode=0o700)
        (self.root / "certs").mkdir(exist_ok=True, mode=0o700)
        if not self.ca_file.exists():
            write_certificate(self.ca_file, self.key_file, [self.domain, self.pubsub])
        self.config.write_text(config_text(self))

    # --- files ----------------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.root / "prosody.cfg.lua"

    @property
    def ca_file(self) -> Path:
        """The server's self-signed certificate: the one authority its clients trust."""
        return self.root / "cert.pem"

    @property
    def key_file(self) -> Path:
        return self.root / "key.pem"

    @property
    def pubsub(self) -> str:
        return f"pubsub.{self.domain}"

    def jid(self, user: str) -> str:
        return f"{user}@{self.domain}"

    # --- accounts and the process -------------------------------------------------------------

    def register(self, user: str, password: str) -> str:
        """Create the account ``user`` (or set its password); its JID."""
        result = subprocess.run(
            [
                _path(PROSODYCTL),
                "--config",
                str(self.config),
                "register",
                user,
                self.domain,
                password,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise BackendFailure(
                f"prosodyctl register {user}: {result.stdout}{result.stderr}".strip(),
                failed=Dependency.subprocess,
            )
        return self.jid(user)

    def start(self) -> None:
        """Start prosody (again) and wait until it accepts clients."""
        self.make_daemon().start()

    def make_daemon(self) -> processes.Daemon:
        """The ``prosody -F`` daemon (not started; ready once its log says it listens)."""
        self.daemon = processes.Daemon(
            "prosody",
            [_path(PROSODY), "--config", str(self.config), "-F"],
            self.root,
            self.config,
            self.port,
            netns=self.netns,
            new_session=True,
            startup_timeout=self.startup_timeout,
            ready_log=READY,
        )
        return self.daemon

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def kill(self) -> None:
        """SIGKILL: the XMPP server is lost, its clients' connections drop."""
        if self.daemon is not None:
            self.daemon.kill()

    @property
    def pid(self) -> int:
        if self.daemon is None:
            raise InvalidState("prosody is not running")
        return self.daemon.pid


def config_text(server: Prosody) -> str:
    """``prosody.cfg.lua``: everything under ``server.root``, client port only, TLS required."""
    root = server.root
    return f"""-- written by tashi.devcluster.prosody
run_as_root = true
daemonize = false
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
certificates = "{root}/certs"
log = {{ info = "*console" }}
interfaces = {{ "{server.host}" }}
c2s_ports = {{ {server.port} }}
c2s_direct_tls_ports = {{ }}
legacy_ssl_ports = {{ }}
s2s_ports = {{ }}
component_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
admin_socket = "{root}/prosody.sock"
admins = {{ {", ".join(f'"{jid}"' for jid in server.admins)} }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "posix", "presence", "offline" }}
modules_disabled = {{ "s2s" }}
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
ssl = {{ certificate = "{server.ca_file}", key = "{server.key_file}" }}
VirtualHost "{server.domain}"
Component "{server.pubsub}" "pubsub"
"""


def write_certificate(cert: Path, key: Path, names: list[str]) -> None:
    """A self-signed certificate (P-256, two days) for ``names`` (its subject the first)."""
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    key.touch(mode=0o600)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
