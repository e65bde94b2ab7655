"""The real steering, in network namespaces: two "VMs" (namespaces on veth ports of a host's
bridge, as a tap would be) each read only their own metadata through their port; a stranger on
the same bridge with the first one's MAC and address, and a process of the host itself, get
nothing; a VM that takes another's address still gets only its own; IMDSv2 over the wire; and
the steering survives the service's restart. Root only (namespaces, nftables)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tashi.domain.launches import instance_id
from tests.nodemanager.metadata import probe

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None,
    reason="needs root and nftables (scripts/bootstrap.sh installs it)",
)

GATEWAY = "198.18.250.1"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Wiring:
    tag: str
    host: str
    state: Path
    helper: subprocess.Popen[str] | None = None

    def ns(self, role: str) -> str:
        return f"tashi-t-{self.tag}-{role}"

    def fetch(self, role: str, path: str, method: str = "GET", **headers: str) -> tuple[int, str]:
        return probe.fetch(self.ns(role), path, method, **headers)

    def start(self) -> None:
        vms = ["42:tp1:52:54:00:00:00:01", "43:tp2:52:54:00:00:00:02"]
        argv = [sys.executable, "-m", "tests.nodemanager.metadata.kernelhost", str(self.state)]
        self.helper = subprocess.Popen(
            ["ip", "netns", "exec", self.host, *argv, *vms],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[3],
        )
        assert self.helper.stdout is not None
        assert self.helper.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.helper is not None:
            assert self.helper.stdin is not None
            self.helper.stdin.close()
            self.helper.wait(timeout=15)
            self.close_pipes()

    def close_pipes(self) -> None:
        if self.helper is not None:
            for pipe in (self.helper.stdin, self.helper.stdout):
                if pipe is not None:
                    pipe.close()
            self.helper = None


@pytest.fixture
def wiring(tmp_path: Path) -> Iterator[Wiring]:
    tag = secrets.token_hex(3)
    w = Wiring(tag, f"tashi-t-{tag}-h", tmp_path)
    made = []
    try:
        for role in ("h", "g1", "g2", "gw", "s"):
            ip("netns", "add", w.ns(role))
            made.append(w.ns(role))
            ip("-n", w.ns(role), "link", "set", "lo", "up")
        ip("-n", w.host, "link", "add", "br1", "type", "bridge")
        ip("-n", w.host, "link", "set", "br1", "up")
        guests = [
            ("g1", "tp1", "01", "10"),
            ("g2", "tp2", "02", "11"),
            ("gw", "tp3", "03", "1"),
            ("s", "tp4", "01", "10"),
        ]  # the stranger: g1's MAC and address
        for role, port, mac, host_part in guests:
            ip(
                "-n",
                w.host,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                w.ns(role),
            )
            ip("-n", w.host, "link", "set", port, "master", "br1", "up")
            ip("-n", w.ns(role), "link", "set", "eth0", "address", f"52:54:00:00:00:{mac}", "up")
            ip("-n", w.ns(role), "addr", "add", f"198.18.250.{host_part}/24", "dev", "eth0")
            if role != "gw":
                ip("-n", w.ns(role), "route", "add", "default", "via", GATEWAY)
        w.start()
        yield w
    finally:
        if w.helper is not None:
            w.helper.kill()
            w.helper.wait()
            w.close_pipes()
        for name in made:
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_each_vm_reads_only_its_own_through_its_port(wiring: Wiring) -> None:
    assert wiring.fetch("g1", "/latest/meta-data/instance-id") == (200, instance_id(42))
    assert wiring.fetch("g2", "/latest/meta-data/instance-id") == (200, instance_id(43))
    assert wiring.fetch("g2", "/2009-04-04/meta-data/local-hostname") == (200, "vm43")
    status, token = wiring.fetch(
        "g1", "/latest/api/token", "PUT", **{"X-aws-ec2-metadata-token-ttl-seconds": "60"}
    )
    assert status == 200
    headers = {"X-aws-ec2-metadata-token": token}
    assert wiring.fetch("g1", "/latest/meta-data/instance-id", **headers)[1] == instance_id(42)
    assert wiring.fetch("g2", "/latest/meta-data/instance-id", **headers)[0] == 401


def test_a_stranger_and_the_host_get_nothing(wiring: Wiring) -> None:
    status, why = wiring.fetch("s", "/latest/meta-data/instance-id")
    assert status == 0, why  # g1's MAC and address, but not g1's port: no answer at all
    status, why = probe.fetch(wiring.host, "/latest/meta-data/instance-id")
    assert status == 0, why  # the host's own processes: closed unanswered


def test_a_vm_that_claims_anothers_address_still_reads_its_own(wiring: Wiring) -> None:
    ip("-n", wiring.ns("g2"), "addr", "flush", "dev", "eth0")
    ip("-n", wiring.ns("g2"), "addr", "add", "198.18.250.10/24", "dev", "eth0")
    ip("-n", wiring.ns("g2"), "route", "add", "default", "via", GATEWAY)
    assert wiring.fetch("g2", "/latest/meta-data/instance-id") == (200, instance_id(43))


def test_the_steering_survives_a_restart_of_the_service(wiring: Wiring) -> None:
    wiring.stop()
    assert wiring.fetch("g1", "/latest/meta-data/instance-id")[0] == 0  # nobody listens
    wiring.start()
    assert wiring.fetch("g1", "/latest/meta-data/instance-id") == (200, instance_id(42))
