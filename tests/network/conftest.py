"""Fixtures for the network driver tests: a private namespace per test, and a guard on the root one.

``netns`` creates a network namespace ``tashi-t-<random>`` and removes it when the test ends,
however it ends; everything a bridge driver test makes (bridges, taps, scripts' work) lives in
it and dies with it. ``root_links_untouched`` (used by every test here, automatically) lists the
root namespace's links of the kinds these tests make (taps, bridges) before and after the test
and fails the test if they differ: a driver pointed at a namespace must never leak into the
host. ``ns_run`` runs a program inside the
namespace. Async tests run on asyncio (anyio's pytest plugin).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# The names these tests give links (taps, bridges). Only they are compared, so that other
# programs on a shared machine changing their own root links cannot fail a test here.
_OURS = re.compile(r"tashi\d+\.\d+|tsh[0-9a-f]{12}|(vm)?br\.?\d+|vxbr\d+|vxlan\d+")


def _root_links() -> set[tuple[int, str]]:
    with IPRoute() as ipr:
        links = {(int(msg["index"]), str(msg.get("ifname"))) for msg in ipr.get_links()}
    return {(index, name) for index, name in links if _OURS.fullmatch(name)}


@pytest.fixture(autouse=True)
def root_links_untouched() -> Iterator[None]:
    before = _root_links()
    yield
    after = _root_links()
    assert after == before, f"the root namespace's links changed: {sorted(after ^ before)}"


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        raise AssertionError("the network tests need root (network namespaces, taps)")
    if not Path("/dev/net/tun").exists():
        raise AssertionError("/dev/net/tun is missing: the kernel has no tun/tap support")
    name = f"tashi-t-{secrets.token_hex(4)}"
    pyroute2_netns.create(name)
    try:
        yield name
    finally:
        pyroute2_netns.remove(name)
        assert name not in pyroute2_netns.listnetns()


def ns_run(netns: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``netns`` (``ip netns exec``), checked, output captured."""
    if shutil.which("ip") is None:
        raise AssertionError("iproute2 is not installed: run `make test`, which does")
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], check=True, capture_output=True, text=True
    )


UNDERLAY = "ul0"  # the "physical" interface of a test host namespace (a veth end)


def underlay(
    netns: str,
    address: str,
    *,
    peer_netns: str | None = None,
    peer_address: str | None = None,
    prefixlen: int = 24,
) -> None:
    """Give ``netns`` an up underlay ``ul0`` with ``address`` (198.18.0.0/15): one end of a veth
    pair whose other end (also ``ul0``) is up in ``peer_netns``, or stays in ``netns`` as ``ul1``.
    Both ends die with their namespaces."""
    with IPRoute(netns=netns, flags=0) as ipr:
        ipr.link("add", ifname=UNDERLAY, kind="veth", peer="ul1")
        (index,) = ipr.link_lookup(ifname=UNDERLAY)
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        ipr.link("set", index=index, state="up")
        (peer,) = ipr.link_lookup(ifname="ul1")
        if peer_netns is not None:
            ipr.link("set", index=peer, net_ns_fd=peer_netns, ifname=UNDERLAY)
        else:
            ipr.link("set", index=peer, state="up")
    if peer_netns is not None:
        with IPRoute(netns=peer_netns, flags=0) as ipr:
            (index,) = ipr.link_lookup(ifname=UNDERLAY)
            if peer_address is not None:
                ipr.addr("add", index=index, address=peer_address, prefixlen=prefixlen)
            ipr.link("set", index=index, state="up")
