"""The command-line grammar: --option value pairs, flags, views, and what is refused."""

from __future__ import annotations

import pytest

from tashi.api.schemas import DiskIn
from tashi.client.argv import parse, wants_help
from tashi.client.errors import UsageError
from tashi.client.verbs import find_verb


def test_values_are_converted_and_defaults_filled_in() -> None:
    args = parse(find_verb("createVm"), ["--name", "web", "--disks", "a.qcow2", "--cores", "2"])
    assert args["name"] == "web"
    assert args["cores"] == 2
    assert args["memory"] == 128
    assert args["cpuShare"] == 1024
    assert args["disks"] == [DiskIn(uri="a.qcow2")]
    assert args["nics"] is None
    assert args["hints"] is None
    assert not args.as_json


def test_equals_form_option_case_json_and_views() -> None:
    args = parse(
        find_verb("getinstances"),
        ["--STATE=running", "--json", "--show-nics", "--hide-disk", "--hide-ALL"],
    )
    assert args["state"] == "Running"
    assert args.as_json
    assert args.views == ((True, "nics"), (False, "disk"), (False, "ALL"))


def test_aliases_and_flags() -> None:
    assert parse(find_verb("migrateVm"), ["--instance", "a", "--dst", "n2"])["targetHostId"] == "n2"
    assert parse(find_verb("unregisterUser"), ["--userId", "4"])["user"] == "4"
    assert parse(find_verb("destroyVm"), ["--instance", "a", "--force"])["force"] is True
    assert parse(find_verb("destroyVm"), ["--instance", "a"])["force"] is False


def test_a_value_may_start_with_a_dash() -> None:
    args = parse(find_verb("setHostNotes"), ["--host", "n1", "--notes", "-- see ticket"])
    assert args["notes"] == "-- see ticket"


@pytest.mark.parametrize(
    ("verb", "argv", "says"),
    [
        ("createVm", ["--disks", "a.qcow2"], "createVm needs --name"),
        ("createVm", [], "needs --name and --disks"),
        ("createVm", ["--name", "a", "--disks", "x", "--name", "b"], "--name is given twice"),
        ("migrateVm", ["--instance", "a", "--dst", "1", "--targetHostId", "2"], "given twice"),
        ("createVm", ["--name"], "--name needs a value"),
        ("createVm", ["--name", "--disks", "x"], "--name needs a value"),
        ("createVm", ["web"], "unexpected argument 'web'"),
        ("createVm", ["--bogus", "1"], "has no option --bogus; its options: --name"),
        ("getVmLayout", ["--host", "1"], "it takes no options"),
        ("getHosts", ["--limit", "0"], "--limit: 0 is less than 1"),
        ("getHosts", ["--after", "-1"], "--after: -1 is less than 0"),
        ("destroyVm", ["--instance", "a", "--force=yes"], "--force takes no value"),
        ("getSlots", ["--show-name"], "prints no table"),
        ("getInstances", ["--show-"], "needs a column name"),
        ("getInstances", ["--show-bogus"], "no column 'bogus'"),
        ("getInstances", ["--json", "--json"], "--json is given twice"),
        ("getSlots", ["--cores", "0"], "--cores: 0 is less than 1"),
        ("getInstances", ["--state", "sleepy"], "--state: 'sleepy' is not an instance state"),
        ("createVm", ["--name", "a", "--disks", "x", "--cores", "abc"], "--cores: 'abc' is not"),
    ],
)
def test_refused(verb: str, argv: list[str], says: str) -> None:
    with pytest.raises(UsageError, match=says):
        parse(find_verb(verb), argv)


def test_help_and_examples_win_over_everything() -> None:
    assert wants_help(["--name", "x", "--HELP"]) == "help"
    assert wants_help(["-h"]) == "help"
    assert wants_help(["--examples"]) == "examples"
    assert wants_help(["--name", "x"]) is None


def test_verbs_match_in_any_case_and_aliases_too() -> None:
    assert find_verb("GETINSTANCES").name == "getInstances"
    assert find_verb("unregisterhost").name == "delHost"
    assert find_verb("registerHost").name == "addHost"


def test_unknown_verb_suggests_close_names() -> None:
    with pytest.raises(UsageError, match="did you mean getInstances"):
        find_verb("getInstanses")
    with pytest.raises(UsageError, match=r"did you mean .*getReservation"):
        find_verb("getres")
    with pytest.raises(UsageError, match="'tashi --help' lists the verbs"):
        find_verb("zzzz")
