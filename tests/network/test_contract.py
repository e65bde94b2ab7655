"""The network driver contract (``tashi.network.base``), over every driver: fake, bridge, vxlan.

The bridge driver runs in a namespace of its own (``netns`` fixture) with an empty ``ifupDir``, so
it makes real taps and bridges there; ``test_bridge.py`` looks at them in the kernel. The vxlan
driver runs in one too, over a veth underlay with a 198.18.0.0/15 address (``test_vxlan.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tashi.config.network import BridgeSettings, VxlanSettings
from tashi.domain.errors import InvalidInput, Unavailable
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import MAX_NICS
from tashi.network.base import Attachment, NetworkCapability, NetworkDriver
from tashi.network.bridge import BridgeDriver
from tashi.network.fake import FakeHostState, FakeNetworkDriver
from tashi.network.taps import tap_name
from tashi.network.vxlan import VxlanDriver
from tests.network.conftest import UNDERLAY, underlay

pytestmark = pytest.mark.anyio

I1, I2 = InstanceId(1), InstanceId(2)
N7, N8 = NetworkId(7), NetworkId(8)
MAC1, MAC2, MAC3 = "52:54:00:00:01:00", "52:54:00:00:01:01", "52:54:00:00:02:00"

Maker = Callable[..., NetworkDriver]


@pytest.fixture(params=["fake", "bridge", "vxlan"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Maker]:
    """``make(create=True)``: a driver of the parametrized kind on one shared "host"; several
    calls give drivers over the same host, as a node manager started again would have."""
    made: list[NetworkDriver] = []
    fake_host = FakeHostState()
    namespace = request.getfixturevalue("netns") if request.param != "fake" else None
    if request.param == "vxlan":
        assert namespace is not None
        await asyncio.to_thread(underlay, namespace, "198.18.254.1")  # pyroute2 wants no loop

    def make_driver(create: bool = True) -> NetworkDriver:
        driver: NetworkDriver
        if request.param == "fake":
            driver = FakeNetworkDriver(create_networks=create, state=fake_host)
        elif request.param == "vxlan":
            # Always creates its networks (and removes them when unused): no strict mode.
            vxlan = VxlanSettings(underlay_device=UNDERLAY, peers="198.18.254.2")
            driver = VxlanDriver(vxlan, netns=namespace)
        else:
            settings = BridgeSettings(ifup_dir=tmp_path, create_bridges=create)
            driver = BridgeDriver(settings, netns=namespace)
        made.append(driver)
        return driver

    yield make_driver
    for driver in made:
        await driver.close()


async def test_attach_returns_the_tap_the_hypervisor_opens(make: Maker) -> None:
    spec = await make().attach(I1, 0, N7, "52:54:00:AB:CD:EF")
    assert spec.tap == "tashi1.0"  # the original name
    assert spec.mac == "52:54:00:ab:cd:ef"
    assert spec.network == N7
    assert spec.ifup_script is None


async def test_attach_is_idempotent(make: Maker) -> None:
    driver = make()
    first = await driver.attach(I1, 0, N7, MAC1)
    assert await driver.attach(I1, 0, N7, MAC1) == first
    assert await driver.list() == [Attachment(I1, 0, N7, MAC1, "tashi1.0")]


async def test_several_nics_on_several_networks(make: Maker) -> None:
    driver = make()
    specs = [
        await driver.attach(I1, 0, N7, MAC1),
        await driver.attach(I1, 1, N8, MAC2),
        await driver.attach(I2, 0, N7, MAC3),
    ]
    assert [s.tap for s in specs] == ["tashi1.0", "tashi1.1", "tashi2.0"]
    assert await driver.list() == [
        Attachment(I1, 0, N7, MAC1, "tashi1.0"),
        Attachment(I1, 1, N8, MAC2, "tashi1.1"),
        Attachment(I2, 0, N7, MAC3, "tashi2.0"),
    ]


async def test_detach_removes_one_instance_and_is_idempotent(make: Maker) -> None:
    driver = make()
    await driver.attach(I1, 0, N7, MAC1)
    await driver.attach(I1, 1, N8, MAC2)
    await driver.attach(I2, 0, N7, MAC3)
    await driver.detach(I1)
    assert [a.instance_id for a in await driver.list()] == [I2]
    await driver.detach(I1)  # again: nothing to do, no error
    await driver.detach(InstanceId(99))  # never attached
    await driver.detach(I2)
    assert await driver.list() == []


async def test_a_restarted_driver_finds_and_adopts_what_the_last_one_made(make: Maker) -> None:
    before = make()
    await before.attach(I1, 0, N7, MAC1)
    await before.attach(I2, 0, N8, MAC3)
    await before.attach(I2, 1, N7, MAC2)
    await before.close()  # the node manager dies; its taps stay

    after = make()
    assert len(await after.list()) == 3
    kept = await after.adopt([I2])  # instance 1 ended while the node manager was away
    assert [(a.instance_id, a.nic_index) for a in kept] == [(I2, 0), (I2, 1)]
    assert await after.list() == kept


async def test_large_instance_ids_get_short_distinct_names(make: Maker) -> None:
    driver = make()
    big = InstanceId(2**63 - 1)
    names = {tap_name(big, nic) for nic in range(MAX_NICS)}
    assert len(names) == MAX_NICS
    assert all(len(name) <= 15 for name in names)
    assert tap_name(InstanceId(99_999_999), 0) == "tashi99999999.0"  # still fits
    spec = await driver.attach(big, 3, N7, MAC1)
    assert spec.tap == tap_name(big, 3) and len(spec.tap) == 15
    assert await driver.list() == [Attachment(big, 3, N7, MAC1, spec.tap)]
    await driver.detach(big)
    assert await driver.list() == []


@pytest.mark.parametrize(
    ("nic", "network", "mac"),
    [
        (MAX_NICS, 7, MAC1),
        (-1, 7, MAC1),
        (0, -1, MAC1),
        (0, 2**24, MAC1),
        (0, 7, "52:54:00:00:01"),
        (0, 7, "not a mac"),
    ],
)
async def test_bad_arguments_are_refused_and_make_nothing(
    make: Maker, nic: int, network: int, mac: str
) -> None:
    driver = make()
    with pytest.raises(InvalidInput):
        await driver.attach(I1, nic, NetworkId(network), mac)
    assert await driver.list() == []


async def test_a_missing_network_is_created_or_named(make: Maker) -> None:
    creating = make(create=True)
    assert NetworkCapability.creates_networks in creating.capabilities
    await creating.ensure_network(N7)
    await creating.ensure_network(N7)  # idempotent
    strict = make(create=False)
    if strict.name == "vxlan":
        return  # a vxlan network is made on demand: there is no strict mode to check
    assert NetworkCapability.creates_networks not in strict.capabilities
    await strict.ensure_network(N7)  # exists now
    await strict.attach(I1, 0, N7, MAC1)
    with pytest.raises(Unavailable, match="8"):
        await strict.ensure_network(N8)
    with pytest.raises(Unavailable, match="8"):
        await strict.attach(I1, 1, N8, MAC2)
    assert [a.network_id for a in await strict.list()] == [N7]


async def test_concurrent_attaches_to_a_new_network(make: Maker) -> None:
    driver = make()
    calls: list[Awaitable[object]] = [
        driver.attach(InstanceId(i), 0, N8, f"52:54:00:00:00:{i:02x}") for i in range(1, 9)
    ]
    await asyncio.gather(*calls)
    assert len(await driver.list()) == 8
