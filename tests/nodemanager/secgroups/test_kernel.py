"""Security groups in a real kernel, in network namespaces: "VMs" are namespaces on veth ports
of a host's bridge (as a tap would be), the host runs the real service beside the metadata
service (``kernelhost.py``), and packets decide: a guest in a group receives only what its rules
let in (ICMP and TCP, by source and port) and replies to what it sent itself, from other guests
and from the host alike; a policy change takes effect at once; a guest cannot send with another
address or MAC; the guard stays while the node manager is down and after it starts again; a
guarded guest still reads its metadata; a VM let go is free again; outbound rules hold what a
guest sends to what they let out, but for its replies to what came in. Root only."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tashi.domain.launches import instance_id
from tests.nodemanager.metadata import probe

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None,
    reason="needs root and nftables (scripts/bootstrap.sh installs it)",
)

# TASHI_TEST_SECGROUP_NET: another /24 (its first three parts) for a run beside another one
NET = os.environ.get("TASHI_TEST_SECGROUP_NET", "198.18.251")
WEB = "sg-0123456789abcdef0"
KEY = f"7:{WEB}"  # the stand-in's VMs belong to user 7
#: role -> (port, MAC, address); g1 is the guarded VM (instance 42)
GUESTS = {
    "g1": ("tp1", "52:54:00:00:01:01", f"{NET}.10"),
    "g2": ("tp2", "52:54:00:00:01:02", f"{NET}.11"),
    "g3": ("tp3", "52:54:00:00:01:03", f"{NET}.12"),
    "gw": ("tp4", "52:54:00:00:01:04", f"{NET}.1"),
}
HOST = f"{NET}.254"  # the host's own address, on the bridge
GUARDED = {"id": 42, "tap": "tp1", "mac": GUESTS["g1"][1], "ip": GUESTS["g1"][2], "groups": [WEB]}


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Wiring:
    tag: str
    state: Path
    helper: subprocess.Popen[str] | None = None
    made: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"tashi-t-{self.tag}-{role}"

    def start(self) -> None:
        argv = [sys.executable, "-m", "tests.nodemanager.secgroups.kernelhost", str(self.state)]
        self.helper = subprocess.Popen(
            ["ip", "netns", "exec", self.ns("h"), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parents[3],
        )
        assert self.helper.stdout is not None
        assert self.helper.stdout.readline().strip() == "ready"

    def tell(self, **command: Any) -> str:
        assert self.helper is not None and self.helper.stdin and self.helper.stdout
        self.helper.stdin.write(json.dumps(command) + "\n")
        self.helper.stdin.flush()
        answer = self.helper.stdout.readline().strip()
        assert answer.startswith("ok "), answer
        return answer[3:]

    def policy(self, *rules: list[Any], egress: list[list[Any]] | None = None) -> str:
        """The group's inbound ``rules``, and its outbound ones (``None``: it lets all out)."""
        out = {} if egress is None else {KEY: egress}
        return self.tell(op="update", policy={KEY: list(rules)}, egress=out)

    def stop(self) -> None:
        if self.helper is not None:
            assert self.helper.stdin is not None and self.helper.stdout is not None
            self.helper.stdin.close()
            self.helper.wait(timeout=15)
            self.helper.stdout.close()
            self.helper = None

    def ping(self, role: str, address: str, *extra: str) -> bool:
        argv = ["ip", "netns", "exec", self.ns(role), "busybox", "ping", "-c", "1", "-W", "1"]
        return (
            subprocess.run([*argv, *extra, address], capture_output=True, check=False).returncode
            == 0
        )

    def connects(self, role: str, address: str, port: int) -> bool:
        argv = [
            "ip",
            "netns",
            "exec",
            self.ns(role),
            "busybox",
            "nc",
            "-w",
            "2",
            address,
            str(port),
        ]
        done = subprocess.run(argv, input=b"", capture_output=True, timeout=10, check=False)
        return b"hello" in done.stdout


@pytest.fixture
def wiring(tmp_path: Path) -> Iterator[Wiring]:
    w = Wiring(secrets.token_hex(3), tmp_path)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for role in ("h", *GUESTS):
            ip("netns", "add", w.ns(role))
            w.made.append(w.ns(role))
            ip("-n", w.ns(role), "link", "set", "lo", "up")
        h = w.ns("h")
        ip("-n", h, "link", "add", "br1", "type", "bridge")
        ip("-n", h, "link", "set", "br1", "up")
        ip("-n", h, "addr", "add", f"{HOST}/24", "dev", "br1")
        for role, (port, mac, address) in GUESTS.items():
            ip(
                "-n",
                h,
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
            ip("-n", h, "link", "set", port, "master", "br1", "up")
            ip("-n", w.ns(role), "link", "set", "eth0", "address", mac, "up")
            ip("-n", w.ns(role), "addr", "add", f"{address}/24", "dev", "eth0")
            if role != "gw":
                ip("-n", w.ns(role), "route", "add", "default", "via", f"{NET}.1")
        for port in (7000, 7001):  # g1 answers "hello" on two TCP ports
            listen = ["busybox", "nc", "-ll", "-p", str(port), "-e", "/bin/echo", "hello"]
            servers.append(subprocess.Popen(["ip", "netns", "exec", w.ns("g1"), *listen]))
        w.start()
        w.tell(op="restore", vms=[GUARDED])
        yield w
    finally:
        for server in servers:
            server.kill()
            server.wait()
        if w.helper is not None:
            w.helper.kill()
            w.helper.wait()
            for pipe in (w.helper.stdin, w.helper.stdout):
                if pipe is not None:
                    pipe.close()
        for name in w.made:
            subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_guest_gets_only_what_its_groups_let_in_and_the_replies_to_its_own(
    wiring: Wiring,
) -> None:
    w = wiring
    # Its group is not in the policy yet (a VM started before its host's policy came): closed,
    # in and out, but for the metadata service
    assert not w.ping("g2", f"{NET}.10") and not w.ping("h", f"{NET}.10")
    assert not w.ping("g1", f"{NET}.11") and not w.ping("g1", HOST)
    assert probe.fetch(w.ns("g1"), "/latest/meta-data/instance-id") == (200, instance_id(42))
    w.policy()  # the group with no rule: nothing in, AWS's default out
    assert not w.ping("g2", f"{NET}.10") and not w.ping("h", f"{NET}.10")
    assert not w.connects("g3", f"{NET}.10", 7000)
    assert w.ping("g1", f"{NET}.11") and w.ping("g1", HOST)  # its own: the replies come in
    w.policy(["icmp", 8, -1, [f"{NET}.11/32"]])
    assert w.ping("g2", f"{NET}.10")  # at once
    assert not w.ping("g3", f"{NET}.10") and not w.ping("h", f"{NET}.10")
    w.policy(["icmp", 8, -1, [f"{NET}.11/32"]], ["tcp", 7000, 7000, [f"{NET}.12/32", f"{HOST}/32"]])
    assert w.connects("g3", f"{NET}.10", 7000) and w.connects("h", f"{NET}.10", 7000)
    assert not w.connects("g3", f"{NET}.10", 7001) and not w.connects("g2", f"{NET}.10", 7000)
    w.policy(["-1", -1, -1, ["0.0.0.0/0"]])
    assert w.ping("g3", f"{NET}.10") and w.connects("g2", f"{NET}.10", 7001)
    w.policy()  # everything revoked
    assert not w.ping("g2", f"{NET}.10") and not w.connects("g3", f"{NET}.10", 7000)


def test_a_guest_cannot_send_with_another_address_or_mac(wiring: Wiring) -> None:
    w = wiring
    w.policy()
    assert w.ping("g1", f"{NET}.12")
    ip("-n", w.ns("g1"), "addr", "add", f"{NET}.50/24", "dev", "eth0")
    assert not w.ping("g1", f"{NET}.12", "-I", f"{NET}.50")  # not its address: dropped
    assert w.ping("g1", f"{NET}.12", "-I", f"{NET}.10")
    ip("-n", w.ns("g1"), "link", "set", "eth0", "address", "52:54:00:00:01:99")
    assert not w.ping("g1", f"{NET}.12")  # not its MAC
    ip("-n", w.ns("g1"), "link", "set", "eth0", "address", GUESTS["g1"][1])
    assert w.ping("g1", f"{NET}.12")


def test_the_guard_stays_while_the_node_manager_is_down_and_after(wiring: Wiring) -> None:
    w = wiring
    version = w.policy(["icmp", 8, -1, [f"{NET}.11/32"]])
    w.stop()  # the kernel keeps every rule
    assert w.ping("g2", f"{NET}.10") and not w.ping("g3", f"{NET}.10")
    w.start()  # it reads its last policy back and restores exactly the VMs it adopted
    assert w.tell(op="restore", vms=[GUARDED]) == version
    assert w.ping("g2", f"{NET}.10") and not w.ping("g3", f"{NET}.10")


def test_a_guarded_guest_reads_its_metadata_and_a_vm_let_go_is_free(wiring: Wiring) -> None:
    w = wiring
    assert probe.fetch(w.ns("g1"), "/latest/meta-data/instance-id") == (200, instance_id(42))
    w.tell(op="detach", id=42)
    assert w.ping("g2", f"{NET}.10") and w.ping("h", f"{NET}.10")
    listed = subprocess.run(
        ["ip", "netns", "exec", w.ns("h"), "nft", "list", "table", "netdev", "tashi-secgroups"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "tp1" not in listed and "g-7-" not in listed
    w.tell(op="attach", vm=GUARDED)  # and back: closed again
    deadline = time.monotonic() + 5
    while w.ping("g2", f"{NET}.10") and time.monotonic() < deadline:
        time.sleep(0.2)  # an echo tracked while it was free may still be answered
    assert not w.ping("g2", f"{NET}.10", "-s", "99")


def test_outbound_rules_hold_what_a_guest_sends_but_not_its_replies(wiring: Wiring) -> None:
    w = wiring
    inbound = [["icmp", 8, -1, [f"{NET}.11/32"]], ["tcp", 7000, 7000, [f"{NET}.12/32"]]]
    w.policy(*inbound)  # AWS's default outbound rule: everything out
    assert w.ping("g1", f"{NET}.11") and w.ping("g1", f"{NET}.12") and w.ping("g1", HOST)
    w.policy(*inbound, egress=[["icmp", 8, -1, [f"{NET}.12/32"]]])
    assert w.ping("g1", f"{NET}.12")  # let out, and its reply let in
    assert not w.ping("g1", f"{NET}.11") and not w.ping("g1", HOST)  # to the host itself too
    assert w.ping("g2", f"{NET}.10") and w.connects("g3", f"{NET}.10", 7000)  # replies go out
    w.policy(*inbound, egress=[])  # every outbound rule revoked: nothing out but replies
    assert not w.ping("g1", f"{NET}.12") and not w.ping("g1", f"{NET}.11")
    assert w.ping("g2", f"{NET}.10") and w.connects("g3", f"{NET}.10", 7000)
    assert probe.fetch(w.ns("g1"), "/latest/meta-data/instance-id") == (200, instance_id(42))
    w.policy(*inbound, egress=[["-1", -1, -1, ["0.0.0.0/0"]]])  # as a rule, not AWS's default
    assert w.ping("g1", f"{NET}.11") and w.ping("g1", HOST)
    w.policy(*inbound)
    assert w.ping("g1", f"{NET}.11")
