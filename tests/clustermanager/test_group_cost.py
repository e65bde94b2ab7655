"""Placing a group costs what the group costs (issue 25): ``activateGroup`` of three reads
those three, however many other instances their owner has. (It read every instance of the owner:
62, 103 and 255 ms as the owner went from 0 to 7,500 and 15,000 instances.) The store's row
conversion is counted while the group is placed, over SQLite with the real schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import InstanceState
from tashi.storage.sql import SqlStore, make_engine, upgrade
from tashi.storage.sql import instances as sql_instances
from tests.clustermanager.fakenodes import cluster

OTHERS = 400  # the owner's instances outside the group


def test_placing_a_group_reads_its_members_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'tashi.sqlite'}"
    upgrade(url)
    c = cluster(tmp_path, SqlStore(make_engine(url)), hosts=3)
    disk = [DiskRequest("base.qcow2")]
    for batch in range(OTHERS // 100):
        request = VmRequest(name=f"other{batch}", disks=disk, memory=64)
        c.run(c.service.instances.create_many(c.alice, request, 100))
    group = c.run(c.service.instances.create_many(c.alice, VmRequest("w", disk, memory=64), 3))

    read: list[int] = []
    convert = sql_instances._records

    def counted(*args: object) -> Iterator[object]:
        for record in convert(*args):  # type: ignore[arg-type]
            read.append(1)
            yield record

    monkeypatch.setattr(sql_instances, "_records", counted)
    placed = c.run(
        c.service.groups.activate_group(
            c.agent, [(i.name, f"h{n}") for n, i in enumerate(group, 1)]
        )
    )
    assert [i.state for i in placed] == [InstanceState.Running] * 3
    assert 0 < len(read) < 50, f"placing 3 read {len(read)} instances (the owner has 403)"
