"""[NodeManager] cores/memory: what a host advertises, whatever its VMM driver measures."""

from __future__ import annotations

import asyncio
import dataclasses

from tashi.config.loader import RawConfig, parse_settings
from tashi.config.settings import Settings
from tashi.daemons.nm import host_capacity
from tashi.vmm.fake import FakeDriver
from tashi.vmm.registry import create_driver


def settings(**options: str) -> Settings:
    values = {("NodeManager", k.lower()): (v, "test") for k, v in options.items()}
    return parse_settings(RawConfig(values=values, files=()))


def test_zero_means_measured_by_the_driver() -> None:
    driver = FakeDriver(memory=16384, cores=8)
    assert asyncio.run(host_capacity(settings(), driver)) == (16384, 8)


def test_overrides_win_over_any_driver() -> None:
    chosen = settings(vmm="fake", cores="4", memory="4096")
    assert asyncio.run(host_capacity(chosen, create_driver(chosen))) == (4096, 4)
    # Without cgroups: the driver would make its default cgroup root (/sys/fs/cgroup/cpu/tashi),
    # and this test would leave it behind.
    qemu = dataclasses.replace(
        chosen,
        node_manager=dataclasses.replace(chosen.node_manager, vmm="qemu"),
        qemu=dataclasses.replace(chosen.qemu, use_cgroups=False),
    )
    assert asyncio.run(host_capacity(qemu, create_driver(qemu))) == (4096, 4)


def test_one_override_keeps_the_other_measured() -> None:
    driver = FakeDriver(memory=16384, cores=8)
    assert asyncio.run(host_capacity(settings(cores="2"), driver)) == (16384, 2)
    assert asyncio.run(host_capacity(settings(memory="1024"), driver)) == (1024, 8)
