"""The pure parsers of --disks, --nics, --hints, --config and the plain values."""

from __future__ import annotations

import pytest

from tashi.api.schemas import DiskIn, NicIn
from tashi.client import parsing
from tashi.client.errors import UsageError
from tashi.client.parsing import NicArg


class TestDisks:
    def test_one_image_is_not_persistent(self) -> None:
        assert parsing.parse_disks("base.qcow2") == [DiskIn(uri="base.qcow2", persistent=False)]

    def test_persistent_flag_and_several_disks(self) -> None:
        assert parsing.parse_disks("db.qcow2:True,scratch.img:false, x.raw:yes") == [
            DiskIn(uri="db.qcow2", persistent=True),
            DiskIn(uri="scratch.img", persistent=False),
            DiskIn(uri="x.raw", persistent=True),
        ]

    def test_copy_asks_for_the_vms_own_persistent_copy(self) -> None:
        disks = parsing.parse_disks("tmpl.qcow2:copy,scratch.img,db.raw:True,t2.img:COPY")
        assert disks == [
            DiskIn(uri="tmpl.qcow2", persistent=True, copy_=True),
            DiskIn(uri="scratch.img"),
            DiskIn(uri="db.raw", persistent=True),
            DiskIn(uri="t2.img", persistent=True, copy_=True),
        ]
        assert disks[0].model_dump(mode="json") == {
            "uri": "tmpl.qcow2",
            "persistent": True,
            "copy": True,
        }  # ``copy`` on the wire

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("a.qcow2,,b.qcow2", "empty item"),
            ("a.qcow2,", "empty item"),
            ("a.qcow2:maybe", "not True or False"),
            ("../etc/passwd", "not an image name"),
            ("/var/lib/x.qcow2", "not an image name"),
            (":True", "not an image name"),
            (":copy", "not an image name"),
            ("a.qcow2:copies", "not True or False"),
        ],
    )
    def test_bad_disks(self, text: str, says: str) -> None:
        with pytest.raises(UsageError, match=says):
            parsing.parse_disks(text)


class TestNics:
    def test_full_item_keeps_the_colons_of_the_mac(self) -> None:
        assert parsing.parse_nics("2:198.18.0.5:52:54:00:AB:cd:01") == [
            NicArg(network=2, ip="198.18.0.5", mac="52:54:00:ab:cd:01")
        ]

    def test_empty_parts_mean_defaults(self) -> None:
        assert parsing.parse_nics("::,3::,:198.18.0.9:") == [
            NicArg(network=None, ip=None, mac=None),
            NicArg(network=3, ip=None, mac=None),
            NicArg(network=None, ip="198.18.0.9", mac=None),
        ]

    def test_short_items_and_network_names(self) -> None:
        assert parsing.parse_nics("4,lab") == [
            NicArg(network=4, ip=None, mac=None),
            NicArg(network="lab", ip=None, mac=None),
        ]

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("1:bad:zz", "not an IPv4 address"),
            ("1::zz", "not a MAC address"),
            ("1::53:54:00:00:00:01", "multicast"),
            ("", "empty"),
            ("1::,", "empty item"),
        ],
    )
    def test_bad_nics(self, text: str, says: str) -> None:
        with pytest.raises(UsageError, match=says):
            parsing.parse_nics(text)

    def test_names_resolve_to_ids_and_empty_network_is_omitted(self) -> None:
        nics = parsing.parse_nics("lab:198.18.0.2:,::")
        assert parsing.nics_to_wire(nics, {"lab": 7}) == [
            NicIn(network=7, ip="198.18.0.2", mac=None),
            NicIn(network=None, ip=None, mac=None),
        ]
        assert "network" not in NicIn(network=None).model_dump(exclude_none=True)

    def test_unknown_network_name(self) -> None:
        with pytest.raises(UsageError, match=r"no network is called 'nope'.*lab"):
            parsing.nics_to_wire(parsing.parse_nics("nope"), {"lab": 7})


class TestHintsAndConfig:
    def test_hints(self) -> None:
        assert parsing.parse_hints("a=1,b.c=x=y, d = v") == {"a": "1", "b.c": "x=y", "d": "v"}

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("novalue", "not key=value"),
            ("=v", "not key=value"),
            ("a=", "no value"),
            ("a=1,a=2", "given twice"),
            ("__resume_source=x", "reserved"),
            ("bad key=1", "names may hold"),
            ("", "empty"),
        ],
    )
    def test_bad_hints(self, text: str, says: str) -> None:
        with pytest.raises(UsageError, match=says):
            parsing.parse_hints(text)

    def test_config_allows_empty_values_to_remove_an_element(self) -> None:
        assert parsing.parse_config("location=EU,auditability=") == {
            "location": "EU",
            "auditability": "",
        }
        with pytest.raises(UsageError, match="not key=value"):
            parsing.parse_config("location")


class TestPlainValues:
    def test_numbers(self) -> None:
        assert parsing.parse_int(" 42 ") == 42
        assert parsing.parse_count("3") == 3
        for bad in ("abc", "1.5", "", "0x10"):
            with pytest.raises(UsageError, match="whole number"):
                parsing.parse_int(bad)
        with pytest.raises(UsageError, match="less than 1"):
            parsing.parse_count("0")

    def test_booleans(self) -> None:
        assert parsing.parse_bool("TRUE") is True
        assert parsing.parse_bool("no") is False
        with pytest.raises(UsageError):
            parsing.parse_bool("perhaps")

    def test_states_in_any_case(self) -> None:
        assert parsing.parse_instance_state("running") == "Running"
        assert parsing.parse_host_state("DRAINED") == "Drained"
        with pytest.raises(UsageError, match="known states"):
            parsing.parse_instance_state("sleeping")
        with pytest.raises(UsageError, match="Normal or Drained"):
            parsing.parse_host_state("VersionMismatch")

    def test_names(self) -> None:
        assert parsing.parse_name(" web ") == "web"
        assert parsing.parse_instance_name("web-01.lab") == "web-01.lab"
        with pytest.raises(UsageError, match="empty"):
            parsing.parse_name("  ")
        with pytest.raises(UsageError, match="may only hold"):
            parsing.parse_instance_name("web_01")
        with pytest.raises(UsageError, match="8 characters"):
            parsing.parse_password("short")
        with pytest.raises(UsageError, match="user name"):
            parsing.parse_user_name("9lives")
