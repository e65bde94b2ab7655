"""Network drivers by name, and what the fake offers node-manager tests beyond the contract."""

from __future__ import annotations

import pytest

from tashi.config.network import BridgeSettings
from tashi.config.nodemanager import NodeManagerSettings
from tashi.config.settings import Settings
from tashi.domain.errors import BackendFailure, InvalidInput
from tashi.domain.ids import InstanceId, NetworkId
from tashi.network import registry
from tashi.network.base import NetworkCapability
from tashi.network.bridge import BridgeDriver
from tashi.network.fake import FakeNetworkDriver

pytestmark = pytest.mark.anyio


async def test_the_default_is_the_bridge_driver_with_the_bridge_settings() -> None:
    settings = Settings(bridge=BridgeSettings(bridge_format="vmbr.%s"))
    driver = registry.create_driver(settings, netns="tashi-t-somewhere")
    try:
        assert isinstance(driver, BridgeDriver)
        assert driver.bridge_name(NetworkId(999)) == "vmbr.999"
        assert driver.netns == "tashi-t-somewhere"
        assert NetworkCapability.ifup_scripts in driver.capabilities
    finally:
        await driver.close()


async def test_drivers_are_chosen_by_name() -> None:
    settings = Settings(node_manager=NodeManagerSettings(network="fake"))
    assert isinstance(registry.create_driver(settings), FakeNetworkDriver)
    bridge = registry.create_driver(settings, name="bridge")
    assert isinstance(bridge, BridgeDriver)
    await bridge.close()
    assert registry.names() == ["bridge", "fake", "vxlan"]


def test_an_unknown_name_says_which_names_exist() -> None:
    settings = Settings(node_manager=NodeManagerSettings(network="tashi.network.Evil"))
    with pytest.raises(
        InvalidInput, match=r"'tashi\.network\.Evil' .* one of: bridge, fake, vxlan"
    ):
        registry.create_driver(settings)


def test_the_settings_defaults_are_the_originals() -> None:
    assert BridgeSettings().bridge_format == "br%s"  # XenPV's defaultBridgeFormat
    assert str(BridgeSettings().ifup_dir) == "/etc"  # /etc/qemu-ifup.<networkId>
    assert NodeManagerSettings().network == "bridge"
    assert not str(NodeManagerSettings().scratch_dir).startswith("/tmp")
    assert Settings().bridge == BridgeSettings()  # part of every program's settings
    assert Settings().node_manager == NodeManagerSettings()


async def test_the_fake_fails_on_request_and_records_calls() -> None:
    fake = FakeNetworkDriver([NetworkId(1)], create_networks=False, failing=[NetworkId(1)])
    with pytest.raises(BackendFailure, match="network 1"):
        await fake.attach(InstanceId(3), 0, NetworkId(1), "52:54:00:00:00:01")
    await fake.detach(InstanceId(3))
    assert [name for name, _ in fake.calls] == ["attach", "detach"]
    assert await fake.list() == []
