"""VMM drivers are chosen by name from one table; an unknown name stops the start-up clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tashi.config.nodemanager import NodeManagerSettings, QemuSettings
from tashi.config.settings import Settings
from tashi.domain.errors import InvalidInput
from tashi.vmm import registry
from tashi.vmm.fake import FakeDriver
from tashi.vmm.qemu.driver import QemuDriver


def test_the_drivers_there_are() -> None:
    assert registry.names() == ["fake", "qemu"]


def test_the_configured_driver_is_built_from_the_settings(tmp_path: Path) -> None:
    qemu = QemuSettings(use_cgroups=False, qemu_bin=tmp_path / "qemu")
    settings = Settings(qemu=qemu)
    driver = registry.create_driver(settings, netns="host2")
    assert isinstance(driver, QemuDriver)
    assert driver.settings.qemu_bin == tmp_path / "qemu"
    fake = Settings(node_manager=NodeManagerSettings(vmm="fake"))
    assert isinstance(registry.create_driver(fake), FakeDriver)


@pytest.mark.parametrize("name", ["kvm", "tashi.vmm.fake.FakeDriver", "os.system", ""])
def test_an_unknown_name_lists_the_known_ones(name: str) -> None:
    with pytest.raises(InvalidInput, match="choose one of: fake, qemu"):
        registry.create_driver(Settings(), name=name)
