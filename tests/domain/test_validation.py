"""Checks on user input in ``tashi.domain.validation``: what passes, what is refused, and that a
refusal says what was wrong."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tashi.domain import validation as v
from tashi.domain.errors import InvalidInput

LIMITS = v.Limits(max_cores=4, max_memory=2048)

# Properties here are cheap; a machine busy with other tests must not fail them on time alone.
relaxed = settings(deadline=None)


def refused(check: Callable[[], object]) -> str:
    """The message of the ``InvalidInput`` that ``check`` raises."""
    with pytest.raises(InvalidInput) as caught:
        check()
    message = caught.value.message
    assert message, "a refusal carries a message"
    assert "\n" not in message, "a refusal is one line"
    return message


# --- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "web-01", "a", "A1", "db.prod", "x" * v.MAX_NAME, "1a"])
def test_good_instance_names_pass_unchanged(name: str) -> None:
    assert v.instance_name(name) == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "empty"),
        ("x" * (v.MAX_NAME + 1), "longer than"),
        ("-web", "start with"),
        (".web", "start with"),
        ("web_1", "'_'"),
        ("web 1", "' '"),
        ("web/1", "'/'"),
        ("wéb", "'é'"),
        ("web\n", "'\\n'"),
        ("12", "all digits"),
    ],
)
def test_bad_instance_names_are_refused_with_the_reason(name: str, says: str) -> None:
    assert says in refused(lambda: v.instance_name(name))


def test_host_and_network_names_follow_instance_rules_and_say_which() -> None:
    assert v.host_name("node-1") == "node-1"
    assert v.network_name("lab.net") == "lab.net"
    host = refused(lambda: v.host_name("bad name"))
    assert "host name" in host
    assert "instance" not in host
    network = refused(lambda: v.network_name(""))
    assert "network name" in network
    assert "instance" not in network


@pytest.mark.parametrize("name", ["alice", "_svc", "Bob.Smith", "a-b_c", "u" * 32])
def test_good_user_names(name: str) -> None:
    assert v.user_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "1alice", "-bob", "al ice", "a/b", "u" * 33, "root;", "alice\n"]
)
def test_bad_user_names(name: str) -> None:
    assert "user name" in refused(lambda: v.user_name(name))


@relaxed
@given(st.text(alphabet=string.ascii_letters + string.digits + ".-", min_size=1, max_size=63))
def test_instance_name_accepts_exactly_its_documented_language(name: str) -> None:
    expected_ok = name[0].isalnum() and not name.isdigit()
    try:
        v.instance_name(name)
    except InvalidInput:
        assert not expected_ok
    else:
        assert expected_ok


@relaxed
@given(st.text(min_size=1, max_size=80))
def test_instance_name_never_lets_through_other_characters(name: str) -> None:
    try:
        v.instance_name(name)
    except InvalidInput:
        return
    assert set(name) <= set(string.ascii_letters + string.digits + ".-")


# --- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["base.qcow2", "debian-12_amd64.img", "a", "x+y.raw"])
def test_good_image_names(name: str) -> None:
    assert v.image_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "/etc/passwd",
        "a/b",
        "..",
        ".",
        "",
        ".hidden",
        "a\\b",
        "..\\x",
        "images/base.qcow2",
        "base.qcow2\n",
        "-rf",
        "a b",
        "~root",
        "..a",
    ],
)
def test_image_names_refuse_paths_and_odd_characters(name: str) -> None:
    assert "not an image name" in refused(lambda: v.image_name(name))


@relaxed
@given(st.text(max_size=40))
def test_an_accepted_image_name_never_leaves_the_image_store(name: str) -> None:
    try:
        v.image_name(name)
    except InvalidInput:
        return
    assert "/" not in name
    assert "\\" not in name
    assert name not in (".", "..")
    assert not name.startswith(".")


# --- MACs and addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_mac", "normal"),
    [
        ("52:54:00:12:34:56", "52:54:00:12:34:56"),
        ("52:54:00:AB:cd:EF", "52:54:00:ab:cd:ef"),
        ("52-54-00-12-34-56", "52:54:00:12:34:56"),
        (" 52:54:00:12:34:56 ", "52:54:00:12:34:56"),
        ("02:00:00:00:00:00", "02:00:00:00:00:00"),
    ],
)
def test_macs_are_normalised(given_mac: str, normal: str) -> None:
    assert v.mac(given_mac) == normal


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "52:54:00:12:34\n:56",
        "52:54:00:12:34",
        "52:54:00:12:34:56:78",
        "525400123456",
        "52:54:00:12:34:5g",
        "5:4:0:1:3:5",
    ],
)
def test_malformed_macs_are_refused(bad: str) -> None:
    assert "not a MAC address" in refused(lambda: v.mac(bad))


@pytest.mark.parametrize("bad", ["01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff", "33:33:00:00:00:01"])
def test_multicast_macs_are_refused(bad: str) -> None:
    assert "multicast" in refused(lambda: v.mac(bad))


@relaxed
@given(st.integers(min_value=0, max_value=2**48 - 1))
def test_a_mac_is_refused_exactly_when_its_group_bit_is_set(value: int) -> None:
    text = ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))
    if value >> 40 & 1:
        assert "multicast" in refused(lambda: v.mac(text))
    else:
        assert v.mac(text.upper()) == text


@pytest.mark.parametrize(
    ("given_ip", "normal"), [("10.0.0.1", "10.0.0.1"), (" 198.18.0.5", "198.18.0.5")]
)
def test_good_ip_addresses(given_ip: str, normal: str) -> None:
    assert v.ip_address(given_ip) == normal


@pytest.mark.parametrize("bad", ["", "10.0.0", "10.0.0.256", "::1", "host.example", "10.0.0.1/24"])
def test_bad_ip_addresses(bad: str) -> None:
    assert "IPv4" in refused(lambda: v.ip_address(bad))


# --- hints -------------------------------------------------------------------------------------


def test_good_hints_pass() -> None:
    given_hints = {"nicModel": "virtio", "densePack": "True", "a.b-c_d": "", "x": "y" * 1024}
    assert v.hints(given_hints) == given_hints


@pytest.mark.parametrize(
    ("hints", "says"),
    [
        ({"__resume_source": "x"}, "reserved"),
        ({"__": "x"}, "reserved"),
        ({"": "x"}, "names may hold"),
        ({"a b": "x"}, "names may hold"),
        ({"a=b": "x"}, "names may hold"),
        ({"_x": "x"}, "names may hold"),
        ({"key\n": "x"}, "names may hold"),
        ({"k": "one\ntwo"}, "one line"),
        ({"k": "one\rtwo"}, "one line"),
        ({"k": "tab\there"}, "one line"),
        ({"k": "line\u2028separator"}, "one line"),
        ({"k": "next\x85line"}, "one line"),
        ({"k": "del\x7f"}, "one line"),
        ({"k": "y" * (v.MAX_HINT_VALUE + 1)}, "one line"),
    ],
)
def test_bad_hints_are_refused(hints: dict[str, str], says: str) -> None:
    assert says in refused(lambda: v.hints(hints))


def test_hints_refuse_the_whole_set_when_one_is_bad() -> None:
    message = refused(lambda: v.hints({"good": "1", "__bad": "2"}))
    assert "__bad" in message


# --- sizes -------------------------------------------------------------------------------------


SIZES = [(v.cores, "maxCores", LIMITS.max_cores), (v.memory, "maxMemory", LIMITS.max_memory)]


@pytest.mark.parametrize(("check", "name", "limit"), SIZES, ids=["cores", "memory"])
def test_sizes_within_the_limits_pass(
    check: Callable[[int, v.Limits], int], name: str, limit: int
) -> None:
    for value in (1, 2, limit):
        assert check(value, LIMITS) == value


@pytest.mark.parametrize(("check", "name", "limit"), SIZES, ids=["cores", "memory"])
def test_sizes_outside_the_limits_name_the_limit(
    check: Callable[[int, v.Limits], int], name: str, limit: int
) -> None:
    for value in (0, -1, limit + 1):
        message = refused(lambda: check(value, LIMITS))  # noqa: B023 (called at once)
        assert name in message
        assert str(limit) in message


def test_limits_default_to_the_original_tashi_values() -> None:
    assert v.Limits() == v.Limits(max_cores=8, max_memory=8192)


@pytest.mark.parametrize("value", [v.MIN_CPU_SHARE, 1024, 1500, v.MAX_CPU_SHARE])
def test_cpu_share_in_bounds(value: int) -> None:
    assert v.cpu_share(value) == value


@pytest.mark.parametrize("value", [0, 1, -1024, v.MAX_CPU_SHARE + 1])
def test_cpu_share_out_of_bounds(value: int) -> None:
    assert "cpuShare" in refused(lambda: v.cpu_share(value))


# --- free text and passwords -------------------------------------------------------------------


def test_notes_up_to_the_limit() -> None:
    assert v.notes("n" * v.MAX_NOTES) == "n" * v.MAX_NOTES
    assert str(v.MAX_NOTES) in refused(lambda: v.notes("n" * (v.MAX_NOTES + 1)))


@pytest.mark.parametrize("text", ["12345678", "pa%ss wörd!", "x" * 1024])
def test_good_passwords(text: str) -> None:
    assert v.password(text) == text


@pytest.mark.parametrize(
    ("text", "says"), [("", "at least 8"), ("1234567", "at least 8"), ("x" * 1025, "1024")]
)
def test_bad_passwords(text: str, says: str) -> None:
    message = refused(lambda: v.password(text))
    assert says in message
    assert text not in message or not text, "a refusal never echoes the password"
