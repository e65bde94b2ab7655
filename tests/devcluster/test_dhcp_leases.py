"""``tashi-cluster add dnsmasq`` starts a crashed dnsmasq again without the leases of NICs its
hosts file no longer lists (``dhcp.prune_leases``): the DhcpDns hook could not release them
while it was down, and dnsmasq would otherwise serve them, names included, until their lease
time ran out (found by the fault-injection suite, issue 14.6). No root needed."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tashi.config.cluster import ClusterSettings
from tashi.devcluster import dhcp, processes
from tashi.devcluster.state import Layout, Proc, State

KEPT = "1796594440 52:54:00:00:00:01 198.19.1.10 web 01:52:54:00:00:00:01"
GONE = "1796594432 52:54:00:00:00:02 198.19.1.11 old 01:52:54:00:00:00:02"


def setup(tmp_path: Path, dnsmasq: Proc) -> tuple[ClusterSettings, Layout, State, Path]:
    settings = dataclasses.replace(ClusterSettings(), state_dir=tmp_path)
    layout = Layout(tmp_path)
    state = State("t", "198.18.0.0/20", 1, [1], "/x", daemons={"dnsmasq.1": dnsmasq})
    directory = tmp_path / "dnsmasq"
    directory.mkdir()
    (directory / "dhcp-hosts.1").write_text("52:54:00:00:00:01,198.19.1.10,web\n")
    (directory / "leases.1").write_text(f"{KEPT}\n{GONE}\n")
    return settings, layout, state, directory / "leases.1"


def test_a_dnsmasq_started_again_forgets_the_leases_of_gone_nics(tmp_path: Path) -> None:
    dead = Proc(pid=2**22 + 1, started=None)  # above any pid the kernel hands out
    settings, layout, state, leases = setup(tmp_path, dead)
    assert dhcp.prune_leases(settings, layout, state, "dnsmasq.1") == ["52:54:00:00:00:02"]
    assert leases.read_text() == f"{KEPT}\n"


def test_a_running_dnsmasqs_lease_file_is_left_alone(tmp_path: Path) -> None:
    me = Proc(pid=os.getpid(), started=processes.start_time(os.getpid()))
    settings, layout, state, leases = setup(tmp_path, me)
    assert dhcp.prune_leases(settings, layout, state, "dnsmasq.1") == []
    assert leases.read_text() == f"{KEPT}\n{GONE}\n"
