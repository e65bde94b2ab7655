"""Text tables, --show-/--hide- views, and the getVmLayout/getSlots computations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tashi.api.schemas import HostOut, InstanceOut
from tashi.client.errors import UsageError
from tashi.client.layout import layout, slots, slots_sentence
from tashi.client.tables import Column, TableSpec, cell, choose_columns, human_size, render
from tashi.client.verbs.cluster import IMAGE_TABLE
from tashi.client.verbs.hosts import HOST_TABLE, LAYOUT_TABLE
from tashi.client.verbs.instances import INSTANCE_TABLE


def instance(iid: int, name: str, **kw: Any) -> InstanceOut:
    fields: dict[str, Any] = {
        "id": iid,
        "name": name,
        "userId": 2,
        "user": "alice",
        "state": "Running",
        "hostId": 1,
        "vmId": None,
        "cores": 1,
        "memory": 256,
        "cpuShare": 1024,
        "disks": [{"uri": "base.qcow2", "persistent": False}],
        "nics": [{"network": 1, "mac": "52:54:00:00:00:01", "ip": None}],
        "hints": {},
        "groupName": None,
        "reason": None,
        "createdAt": None,
        "stateSince": None,
    }
    fields.update(kw)
    return InstanceOut.model_validate(fields)


def host(hid: int, name: str, **kw: Any) -> HostOut:
    fields: dict[str, Any] = {
        "id": hid,
        "name": name,
        "up": True,
        "decayed": False,
        "state": "Normal",
        "memory": 2048,
        "cores": 4,
        "cpuSpeed": 0,
        "version": "0.1.0",
        "notes": "",
        "reserved": [],
        "config": {},
        "lastHeartbeat": None,
        "load": None,
    }
    fields.update(kw)
    return HostOut.model_validate(fields)


SPEC: TableSpec[dict[str, object]] = TableSpec(
    columns=tuple(Column(n, lambda r, n=n: r[n]) for n in ("id", "name", "size", "extra")),
    default=("id", "name", "size"),
)


class TestViews:
    def test_default_view(self) -> None:
        assert choose_columns(SPEC, []) == ["id", "name", "size"]

    def test_show_appends_and_hide_removes_in_order(self) -> None:
        assert choose_columns(SPEC, [(True, "extra"), (False, "name")]) == ["id", "size", "extra"]

    def test_show_all_and_hide_all(self) -> None:
        assert choose_columns(SPEC, [(True, "all")]) == ["id", "name", "size", "extra"]
        assert choose_columns(SPEC, [(False, "all"), (True, "name")]) == ["name"]

    def test_column_names_match_in_any_case_and_do_not_repeat(self) -> None:
        assert choose_columns(SPEC, [(True, "NAME"), (True, "Extra")]) == [
            "id",
            "name",
            "size",
            "extra",
        ]

    def test_unknown_column_lists_the_known_ones(self) -> None:
        with pytest.raises(UsageError, match="no column 'bogus'; columns: id name size extra"):
            choose_columns(SPEC, [(True, "bogus")])


class TestRender:
    def test_aligned_with_header_and_dashes_sorted_by_first_column(self) -> None:
        rows = [
            {"id": 10, "name": "b", "size": 1, "extra": None},
            {"id": 9, "name": "longer-name", "size": 22, "extra": None},
        ]
        assert render(SPEC, rows, ["id", "name", "size"]).splitlines() == [
            "id  name         size",
            "--  -----------  ----",
            "9   longer-name  22",
            "10  b            1",
        ]

    def test_sort_by_a_text_first_column(self) -> None:
        rows = [{"id": 1, "name": "b"}, {"id": 2, "name": "a"}]
        assert render(SPEC, rows, ["name", "id"]).splitlines()[2:] == ["a     2", "b     1"]

    def test_empty_list_prints_the_header(self) -> None:
        assert render(SPEC, [], ["id", "name"]).splitlines() == ["id  name", "--  ----"]

    def test_no_columns_prints_nothing(self) -> None:
        assert render(SPEC, [{"id": 1}], []) == ""

    def test_cells(self) -> None:
        assert cell(None) == "-"
        assert cell(True) == "True"
        assert cell([1, 2]) == "1,2"
        assert cell([]) == "-"
        assert cell({"a": "1", "b": "2"}) == "a=1,b=2"
        assert cell(0.5) == "0.50"
        assert cell(datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)) == "2026-01-02 03:04:05+00:00"

    @pytest.mark.parametrize(
        ("size", "text"),
        [(0, "0B"), (1023, "1023B"), (1024, "1.00K"), (1868310528, "1.74G"), (5 * 2**50, "5.00P")],
    )
    def test_human_size(self, size: int, text: str) -> None:
        assert human_size(size) == text


class TestInstanceTable:
    def test_original_columns_and_first_disk(self) -> None:
        vm = instance(
            3,
            "db",
            hostId=None,
            state="Pending",
            disks=[{"uri": "db.qcow2", "persistent": True}, {"uri": "x.img", "persistent": False}],
        )
        lines = render(INSTANCE_TABLE, [vm], INSTANCE_TABLE.default).splitlines()
        assert lines[0].split() == [
            "id",
            "hostId",
            "name",
            "user",
            "state",
            "disk",
            "memory",
            "cores",
        ]
        assert lines[2].split() == ["3", "-", "db", "alice", "Pending", "db.qcow2:True", "256", "1"]

    def test_every_extra_column_renders(self) -> None:
        vm = instance(1, "web", hints={"a": "1"})
        text = render(INSTANCE_TABLE, [vm], INSTANCE_TABLE.names())
        assert "1:-:52:54:00:00:00:01" not in text
        assert "1::52:54:00:00:00:01" in text
        assert "a=1" in text

    def test_host_and_image_tables(self) -> None:
        assert HOST_TABLE.default == tuple(
            ["id", "name", "up", "state", "memory", "cores", "version", "notes", "reserved"]
        )
        assert IMAGE_TABLE.default == ("id", "imageName", "imageSize")


class TestLayout:
    def test_rows_sum_the_instances_placed_on_each_host(self) -> None:
        hosts = [host(1, "n1"), host(2, "n2", state="Drained")]
        vms = [
            instance(1, "b", hostId=1, memory=512, cores=2),
            instance(2, "a", hostId=1, memory=256),
            instance(3, "p", hostId=None),
        ]
        rows = layout(hosts, vms)
        assert (rows[0].instances, rows[0].usedMemory, rows[0].usedCores) == (["a", "b"], 768, 3)
        assert (rows[1].instances, rows[1].usedMemory, rows[1].usedCores) == ([], 0, 0)
        text = render(LAYOUT_TABLE, rows, LAYOUT_TABLE.default).splitlines()
        assert text[0].split() == [
            "id",
            "name",
            "state",
            "instances",
            "usedMemory",
            "memory",
            "usedCores",
            "cores",
        ]
        assert text[2].split() == ["1", "n1", "Normal", "a,b", "768", "2048", "3", "4"]
        assert text[3].split() == ["2", "n2", "Drained", "-", "0", "2048", "0", "4"]

    def test_slots_count_only_hosts_up_and_normal(self) -> None:
        hosts = [
            host(1, "n1", memory=2048, cores=4),
            host(2, "n2", state="Drained"),
            host(3, "n3", up=False),
            host(4, "n4", memory=1000, cores=8),
        ]
        vms = [instance(1, "a", hostId=1, memory=1024, cores=1)]
        rows = layout(hosts, vms)
        # n1: min(3 // 1, 1024 // 256) = 3; n4: min(8, 1000 // 256 = 3) = 3
        assert slots(rows, 1, 256) == 6
        assert slots(rows, 2, 128) == 1 + 4

    def test_an_overcommitted_host_offers_no_slots(self) -> None:
        rows = layout([host(1, "n1", memory=256)], [instance(1, "a", memory=512)])
        assert slots(rows, 1, 128) == 0

    def test_sentence(self) -> None:
        assert slots_sentence(4, 1, 128) == (
            "4 available slots for instances with 1 core(s) and 128 MB of memory."
        )
