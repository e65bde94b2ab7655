"""The metadata service as the node service drives it, over the fake plumbing: a slot per tap,
served from the VM's start to its end, restored after a restart, nothing for an ifup script's
tap; and a failing kernel that costs the VM its metadata, never its start."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from tashi.domain.ids import InstanceId, NetworkId
from tashi.network.base import Attachment
from tashi.network.fake import FakeHostState
from tashi.nodemanager.metadata import nocloud
from tashi.nodemanager.metadata.answers import Answers
from tashi.nodemanager.metadata.fake import FakePlumbing
from tashi.nodemanager.metadata.nocloud import Seeds
from tashi.nodemanager.metadata.service import MetadataService
from tashi.nodemanager.metadata.tokens import Tokens
from tashi.nodemanager.service import NodeService
from tests.nodemanager.metadata.guests import SITE, instance
from tests.nodemanager.test_service import over_fakes


def service(plumbing: FakePlumbing, seeds: Seeds | None = None) -> MetadataService:
    answers = Answers(Tokens(b"k" * 32, lambda: 1e9))
    return MetadataService(plumbing, answers, SITE, lambda: datetime.now(UTC), seeds=seeds)


async def started(plumbing: FakePlumbing, seeds: Seeds | None = None) -> MetadataService:
    metadata = service(plumbing, seeds)
    await plumbing.prepare()
    metadata.serving = True  # as start() leaves it, without the listener (it needs tashi-md)
    return metadata


def tap(iid: int, nic: int) -> Attachment:
    return Attachment(
        InstanceId(iid), nic, NetworkId(1), f"52:54:00:00:{iid:02x}:{nic:02x}", f"tashi{iid}.{nic}"
    )


def test_each_tap_gets_a_slot_and_its_own_guest_until_detached() -> None:
    async def scenario() -> None:
        plumbing = FakePlumbing()
        metadata = await started(plumbing)
        await metadata.attach(instance(42), [tap(42, 0), tap(42, 1)])
        await metadata.attach(instance(43), [tap(43, 0)])
        slots = {nic.tap: slot for slot, nic in plumbing.nics.items()}
        assert sorted(slots) == ["tashi42.0", "tashi42.1", "tashi43.0"]
        assert len(set(slots.values())) == 3
        served = {t: g.instance.id for t, g in metadata.guests().items()}
        assert served == {"tashi42.0": 42, "tashi42.1": 42, "tashi43.0": 43}
        assert metadata.guest(slots["tashi43.0"]).instance.id == 43  # type: ignore[union-attr]
        await metadata.detach(InstanceId(42))
        assert sorted(n.tap for n in plumbing.nics.values()) == ["tashi43.0"]
        assert metadata.guest(slots["tashi42.0"]) is None
        await metadata.restore([(instance(43), [tap(43, 0)]), (instance(44), [tap(44, 0)])])
        assert plumbing.calls[-1] == ("reset", ["tashi43.0", "tashi44.0"])
        assert sorted(g.instance.id for g in metadata.guests().values()) == [43, 44]

    asyncio.run(scenario())


def test_a_kernel_that_refuses_costs_the_metadata_not_the_vm() -> None:
    async def scenario() -> None:
        plumbing = FakePlumbing()
        metadata = await started(plumbing)
        plumbing.failing = True
        await metadata.attach(instance(42), [tap(42, 0)])  # logged, not raised
        assert metadata.guests() == {}
        await metadata.detach(InstanceId(42))

    asyncio.run(scenario())


def test_a_host_whose_plumbing_cannot_start_serves_nothing() -> None:
    async def scenario() -> None:
        metadata = service(FakePlumbing(failing=True))
        await metadata.start()
        assert not metadata.serving
        await metadata.attach(instance(42), [tap(42, 0)])
        assert metadata.guests() == {}
        await metadata.close()

    asyncio.run(scenario())


def test_the_node_service_serves_a_vm_from_its_start_to_its_end(tmp_path: Path) -> None:
    async def scenario() -> None:
        plumbing = FakePlumbing()
        metadata = await started(plumbing, Seeds(default=False))
        taps = FakeHostState()  # the kernel's: it outlives a node manager

        def node() -> NodeService:
            return over_fakes(tmp_path, taps, metadata=metadata)

        first = node()
        await first.start(instance(42))
        assert sorted(metadata.guests()) == ["tashi42.0", "tashi42.1"]
        seeded = dataclasses.replace(instance(43), hints={"nocloud": "true"})
        await first.start(seeded)
        disks = first.driver._vms[InstanceId(43)].spec.disks  # type: ignore[attr-defined]
        assert [d.read_only for d in disks] == [False, True]  # the seed after the VM's disks
        assert disks[1].path == tmp_path / "vms" / "43" / nocloud.SEED and disks[1].path.exists()
        await first.destroy(InstanceId(43))
        assert not (tmp_path / "vms" / "43").exists()  # the seed went with the VM's directory
        again = node()  # a restart: the same host, the VM still runs
        await again.recover()
        assert plumbing.calls[-1] == ("reset", ["tashi42.0", "tashi42.1"])
        await again.destroy(InstanceId(42))
        assert metadata.guests() == {} and plumbing.nics == {}

    asyncio.run(scenario())
