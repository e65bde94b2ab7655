"""The bridge driver against the kernel, in a namespace per test: what it makes, what it refuses,
the qemu-ifup convention, and a real QEMU opening the taps.

The kernel's view is read with ``ip -j`` (iproute2), not through our own netlink module, so these
tests check the driver against an independent witness.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tashi.config.network import BridgeSettings
from tashi.devcluster.processes import stop_child, wait_for
from tashi.domain.errors import BackendFailure, InvalidInput, Unavailable
from tashi.domain.ids import InstanceId, NetworkId
from tashi.network.bridge import BridgeDriver
from tashi.network.netlink import Netlink
from tests.network.conftest import ns_run

pytestmark = pytest.mark.anyio

I1, I2, I3 = InstanceId(1), InstanceId(2), InstanceId(3)
N7, N8 = NetworkId(7), NetworkId(8)
MAC1, MAC2, MAC3 = "52:54:00:00:01:00", "52:54:00:00:01:01", "52:54:00:00:02:00"
QEMU = "qemu-system-x86_64"


def links(netns: str) -> dict[str, dict[str, Any]]:
    out = ns_run(netns, "ip", "-j", "-d", "link", "show").stdout
    return {link["ifname"]: link for link in json.loads(out)}


def driver(netns: str, ifup_dir: Path, **settings: Any) -> BridgeDriver:
    return BridgeDriver(BridgeSettings(ifup_dir=ifup_dir, **settings), netns=netns)


async def test_taps_are_up_ports_of_their_networks_bridges(netns: str, tmp_path: Path) -> None:
    nets = driver(netns, tmp_path)
    try:
        await nets.attach(I1, 0, N7, MAC1)
        await nets.attach(I1, 1, N8, MAC2)
        await nets.attach(I2, 0, N7, MAC3)
    finally:
        await nets.close()
    found = links(netns)
    assert set(found) == {"lo", "br7", "br8", "tashi1.0", "tashi1.1", "tashi2.0"}
    for tap, bridge, mac in [("tashi1.0", "br7", MAC1), ("tashi1.1", "br8", MAC2)]:
        link = found[tap]
        assert link["master"] == bridge
        assert "UP" in link["flags"]
        assert link["linkinfo"]["info_kind"] == "tun"
        assert link["linkinfo"]["info_data"]["type"] == "tap"
        assert link["linkinfo"]["info_data"]["persist"] is True
        assert link["address"] == "fe" + mac[2:]  # never the bridge's lowest MAC
    assert found["tashi2.0"]["master"] == "br7"
    assert found["tashi1.0"]["ifalias"] == f"tashi-nic instance=1 nic=0 network=7 mac={MAC1}"
    assert found["br7"]["linkinfo"]["info_kind"] == "bridge"
    assert found["br7"]["ifalias"] == "tashi-bridge network=7"
    assert "UP" in found["br7"]["flags"]


async def test_detach_leaves_only_the_bridges(netns: str, tmp_path: Path) -> None:
    nets = driver(netns, tmp_path)
    try:
        await nets.attach(I1, 0, N7, MAC1)
        await nets.attach(I1, 1, N8, MAC2)
        await nets.attach(I2, 0, N7, MAC3)
        await nets.detach(I1)
        assert set(links(netns)) == {"lo", "br7", "br8", "tashi2.0"}
        await nets.detach(I2)
    finally:
        await nets.close()
    assert set(links(netns)) == {"lo", "br7", "br8"}  # bridges are host configuration


async def test_an_existing_bridge_is_used_as_it_is(netns: str, tmp_path: Path) -> None:
    ns_run(netns, "ip", "link", "add", "vmbr.7", "type", "bridge")
    nets = driver(netns, tmp_path, bridge_format="vmbr.%s", create_bridges=False)
    try:
        await nets.attach(I1, 0, N7, MAC1)
        with pytest.raises(Unavailable, match=r"bridge vmbr\.8 of network 8 does not exist"):
            await nets.attach(I1, 1, N8, MAC2)
    finally:
        await nets.close()
    found = links(netns)
    assert found["tashi1.0"]["master"] == "vmbr.7"
    assert "ifalias" not in found["vmbr.7"]  # not ours: not marked, not changed
    assert "tashi1.1" not in found


async def test_a_link_in_the_way_is_reported_not_replaced(netns: str, tmp_path: Path) -> None:
    ns_run(netns, "ip", "link", "add", "br7", "type", "veth", "peer", "name", "tashi2.0")
    nets = driver(netns, tmp_path)
    strict = driver(netns, tmp_path, create_bridges=False)
    try:
        with pytest.raises(BackendFailure, match=r"br7 .* is a veth, not a bridge"):
            await nets.attach(I1, 0, N7, MAC1)
        with pytest.raises(Unavailable, match="br7 of network 7 is a veth"):
            await strict.ensure_network(N7)
        with pytest.raises(BackendFailure, match=r"tashi2\.0 exists but is a veth, not a tap"):
            await nets.attach(I2, 0, N8, MAC3)
        await nets.detach(I2)  # not a tap: never deleted
    finally:
        await nets.close()
        await strict.close()
    assert {"br7", "tashi2.0"} <= set(links(netns))


async def test_a_tap_left_by_a_crash_is_reused_or_removed(netns: str, tmp_path: Path) -> None:
    # Made just before the node manager died: a tap with the name but not yet the mark.
    ns_run(netns, "ip", "tuntap", "add", "dev", "tashi1.0", "mode", "tap")
    ns_run(netns, "ip", "tuntap", "add", "dev", "tashi2.3", "mode", "tap")
    nets = driver(netns, tmp_path)
    try:
        await nets.attach(I1, 0, N7, MAC1)  # reused, marked, plugged
        assert [a.tap for a in await nets.list()] == ["tashi1.0"]
        await nets.detach(I2)  # unmarked, but named for instance 2: removed
    finally:
        await nets.close()
    found = links(netns)
    assert found["tashi1.0"]["master"] == "br7"
    assert "tashi2.3" not in found


async def test_attach_again_puts_a_tap_back_on_its_bridge(netns: str, tmp_path: Path) -> None:
    nets = driver(netns, tmp_path)
    try:
        await nets.attach(I1, 0, N7, MAC1)
        ns_run(netns, "ip", "link", "set", "tashi1.0", "nomaster", "down")
        await nets.attach(I1, 0, N7, MAC1)
    finally:
        await nets.close()
    assert links(netns)["tashi1.0"]["master"] == "br7"
    assert "UP" in links(netns)["tashi1.0"]["flags"]


async def test_taps_follow_the_bridge_mtu(netns: str, tmp_path: Path) -> None:
    ns_run(netns, "ip", "link", "add", "br7", "type", "bridge")
    ns_run(netns, "ip", "link", "set", "br7", "mtu", "9000")
    nets = driver(netns, tmp_path)
    try:
        await nets.attach(I1, 0, N7, MAC1)
    finally:
        await nets.close()
    assert links(netns)["tashi1.0"]["mtu"] == 9000


@pytest.mark.parametrize("fmt", ["br", "br%s%s", "br%d", "%s%%", "a-very-long-br%s", "br %s", ""])
def test_bad_bridge_formats_are_refused_at_start(fmt: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="bridgeFormat"):
        BridgeDriver(BridgeSettings(bridge_format=fmt, ifup_dir=tmp_path))


# pyroute2's IPRoute(netns=...) for a namespace that does not exist raises from its constructor
# and leaves the AF_UNIX socket and the event loop it made for it; we never get an object to close.
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <socket.socket fd=[0-9]+, family=1:"
    "pytest.PytestUnraisableExceptionWarning"
)
@pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function BaseEventLoop.__del__:"
    "pytest.PytestUnraisableExceptionWarning"
)
async def test_a_missing_namespace_is_a_backend_failure_and_is_not_created(
    tmp_path: Path,
) -> None:
    nets = driver("tashi-t-does-not-exist", tmp_path)
    try:
        with pytest.raises(BackendFailure, match="tashi-t-does-not-exist"):
            await nets.attach(I1, 0, N7, MAC1)
    finally:
        await nets.close()
    assert not Path("/run/netns/tashi-t-does-not-exist").exists()


def test_kernel_errors_leave_the_seam_as_backend_failures(netns: str) -> None:
    nl = Netlink(netns)
    try:
        with pytest.raises(BackendFailure, match=r"setting master of lo .* failed: .*errno"):
            nl.set("lo", master=99999)
        with pytest.raises(InvalidInput, match="not an interface name"):
            nl.add_tap("x" * 16)
        assert nl.delete("nothing-here") is False
    finally:
        nl.close()


# --- the qemu-ifup.<networkId> convention -------------------------------------------------------


def ifup_script(directory: Path, network: int, bridge: str, log: Path) -> Path:
    """A site script as in the original INSTALL: bring the tap up and put it on the bridge
    (which it makes if missing, as the sample qemu-ifup did); it records its argument."""
    script = directory / f"qemu-ifup.{network}"
    script.write_text(
        "#!/bin/sh\nset -e\n"
        f'echo "$1" >> {log}\n'
        f"ip link show {bridge} >/dev/null 2>&1 || ip link add {bridge} type bridge\n"
        f'ip link set "$1" master {bridge} up\n'
    )
    script.chmod(0o755)
    return script


async def test_an_ifup_script_takes_over_and_the_driver_makes_nothing(
    netns: str, tmp_path: Path
) -> None:
    script = ifup_script(tmp_path, 7, "vmbr", tmp_path / "ifup.log")
    nets = driver(netns, tmp_path)
    try:
        spec = await nets.attach(I3, 0, N7, MAC1)
        await nets.ensure_network(N7)  # the script's business: no bridge made
        assert await nets.list() == []
        script.chmod(0o644)  # not executable: ignored, the driver makes the tap
        other = await nets.attach(I3, 1, N7, MAC2)
    finally:
        await nets.close()
    assert spec.ifup_script == script and spec.tap == "tashi3.0" and spec.mac == MAC1
    assert other.ifup_script is None
    assert set(links(netns)) == {"lo", "br7", "tashi3.1"}


@contextmanager
def qemu_in(netns: str, *netdev: str) -> Iterator[subprocess.Popen[bytes]]:
    """A QEMU with no guest (``-M none -S``) but real tap netdevs, stopped by its pid."""
    argv = ["ip", "netns", "exec", netns, QEMU, "-M", "none", "-nodefaults", "-display", "none"]
    argv += ["-S", *[arg for spec in netdev for arg in ("-netdev", spec)]]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        stop_child(process, 10)


async def test_qemu_runs_the_ifup_script_with_the_tap_name(netns: str, tmp_path: Path) -> None:
    log = tmp_path / "ifup.log"
    ifup_script(tmp_path, 7, "vmbr", log)
    nets = driver(netns, tmp_path)
    try:
        spec = await nets.attach(I3, 0, N7, MAC1)
    finally:
        await nets.close()
    netdev = f"tap,id=n0,ifname={spec.tap},script={spec.ifup_script},downscript=no"
    with qemu_in(netns, netdev) as qemu:
        wait_for(
            "the script",
            lambda: links(netns).get(spec.tap, {}).get("master") == "vmbr",
            15.0,
            error=AssertionError,
        )
        assert qemu.poll() is None
        assert log.read_text() == f"{spec.tap}\n"
        assert links(netns)[spec.tap]["linkinfo"]["info_data"]["persist"] is False
    assert spec.tap not in links(netns)  # QEMU's own tap ends with QEMU


async def test_qemu_opens_the_drivers_tap_by_name(netns: str, tmp_path: Path) -> None:
    nets = driver(netns, tmp_path)
    try:
        first = await nets.attach(I1, 0, N7, MAC1)
        second = await nets.attach(I1, 1, N8, MAC2)
        netdevs = [
            f"tap,id=n{i},ifname={s.tap},script=no,downscript=no"
            for i, s in enumerate([first, second])
        ]
        with qemu_in(netns, *netdevs) as qemu:

            def carrier() -> bool:
                found = links(netns)
                return all("LOWER_UP" in found[s.tap]["flags"] for s in (first, second))

            wait_for("QEMU to open both taps", carrier, 15.0, error=AssertionError)
            assert qemu.poll() is None
        found = links(netns)
        assert "LOWER_UP" not in found[first.tap]["flags"]  # persistent: outlives QEMU
        assert found[first.tap]["master"] == "br7" and found[second.tap]["master"] == "br8"
        await nets.detach(I1)
    finally:
        await nets.close()
    assert set(links(netns)) == {"lo", "br7", "br8"}
