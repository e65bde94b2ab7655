"""The ``tashi`` command in-process: help, examples, verb matching, and errors as one line.

Behaviour against a real cluster manager is in ``test_client_live.py``; these tests need no
server: they cover everything decided before a request is sent, and a server that is not there.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tashi.client import cli as cli_module
from tashi.client.argv import parse
from tashi.client.errors import EXIT_CODES, UsageError
from tashi.client.sdk import TashiClient
from tashi.client.verbs import ALL_VERBS
from tashi.client.verbs import cluster as cluster_verbs
from tashi.client.verbs.base import Args, Context, Verb
from tashi.runtime.ports import free_port
from tests.client.conftest import Cli

VERB_IDS = [v.name for v in ALL_VERBS]


def test_overview_lists_every_verb_by_group(cli: Cli) -> None:
    ran = cli("--help")
    assert ran.status == 0
    for title in ("Instances (VMs):", "Hosts and capacity:", "Administration (admin role):"):
        assert title in ran.out
    for verb in ALL_VERBS:
        assert f"  {verb.name} " in ran.out
    assert "exit status:" in ran.out


def test_no_verb_prints_the_overview_on_stderr_and_fails(cli: Cli) -> None:
    ran = cli()
    assert ran.status == 2
    assert "usage: tashi VERB" in ran.err


@pytest.mark.parametrize("verb", ALL_VERBS, ids=VERB_IDS)
def test_every_verb_has_help_with_every_option_and_examples(cli: Cli, verb: Verb) -> None:
    ran = cli(verb.name, "--help")
    assert ran.status == 0, ran.err
    assert ran.out.startswith(f"usage: tashi {verb.name}")
    for opt in verb.options:
        assert f"--{opt.name}" in ran.out
        if opt.default is not None and not opt.flag:
            assert f"Default: {opt.default}." in ran.out
    assert "--json" in ran.out
    assert "examples:" in ran.out
    assert verb.examples, f"{verb.name} has no examples"


@pytest.mark.parametrize("verb", ALL_VERBS, ids=VERB_IDS)
def test_examples_print_only_the_examples_and_every_example_parses(cli: Cli, verb: Verb) -> None:
    ran = cli(verb.name.upper(), "--examples")
    assert ran.status == 0
    assert ran.out.splitlines() == ["examples:", *(f"  {e}" for e in verb.examples)]
    for example in verb.examples:
        words = shlex.split(example)
        assert words[0] == "tashi"
        assert words[1].lower() in {n.lower() for n in (verb.name, *verb.aliases)}
        parse(verb, words[2:])


def test_help_verb_and_admin_prog(cli: Cli) -> None:
    ran = cli("help", "getslots", prog="tashi-admin")
    assert ran.status == 0
    assert ran.out.startswith("usage: tashi-admin getSlots")
    assert "Default: 128." in ran.out


@pytest.mark.parametrize(
    "argv",
    [
        ["createVm", "--name", "x", "--disks", "a.qcow2", "--cores", "abc"],
        ["createVm", "--name", "x", "--disks", ""],
        ["createVm", "--name", "x", "--disks", "a.qcow2", "--nics", "1:bad:zz"],
        ["createVm", "--name", "x", "--disks", "a.qcow2", "--hints", "novalue"],
        ["createVm", "--name", "x", "--disks", "a.qcow2", "--hints", "a=1", "--hints", "b=2"],
        ["createVm", "--name", "bad_name", "--disks", "a.qcow2"],
        [
            "createMany",
            "--basename",
            "w",
            "--count",
            "2",
            "--disks",
            "a",
            "--nics",
            "1::52:54:0:0:0:1",
        ],
        ["getInstancez"],
        ["getInstances", "--show-nothing"],
        ["getSlots", "--cores"],
    ],
)
def test_bad_arguments_are_one_line_and_status_2(cli: Cli, argv: list[str]) -> None:
    ran = cli(*argv)
    assert ran.status == 2
    assert ran.out == ""
    assert ran.err.startswith("tashi: error: ")
    assert ran.err.count("\n") == 1
    assert "Traceback" not in ran.err


def test_verbs_are_case_insensitive(cli: Cli) -> None:
    for spelling in ("getinstances", "GETINSTANCES", "GetInstances"):
        ran = cli(spelling, "--show-bogus")
        assert "no column 'bogus'" in ran.err  # reached getInstances' own parser


def test_no_credentials_says_where_to_put_them(cli: Cli) -> None:
    ran = cli("getInstances")
    assert ran.status == 9
    assert ran.err.startswith("tashi: error: no credentials")
    for where in ("~/.tashi/Client.cfg", "TASHI_USER", "admin-credentials.cfg"):
        assert where in ran.err


def test_user_without_password_is_not_prompted_without_a_terminal(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASHI_USER", "alice")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    ran = cli("getHosts")
    assert ran.status == 9
    assert "no password for alice" in ran.err


def test_unreachable_cluster_manager_names_the_url_and_the_settings(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("TASHI_CM_HOST", "127.0.0.1")
    monkeypatch.setenv("TASHI_CM_PORT", str(port))
    monkeypatch.setenv("TASHI_TOKEN", "some-token")
    ran = cli("getInstances")
    assert ran.status == 11
    assert f"http://127.0.0.1:{port}" in ran.err
    assert "TASHI_CM_HOST" in ran.err
    assert "clusterManagerHost" in ran.err
    assert ran.err.count("\n") == 1


def test_a_bad_config_file_is_status_12(cli: Cli, isolated: Path) -> None:
    (isolated / ".tashi").mkdir()
    (isolated / ".tashi" / "Client.cfg").write_text("[Client]\nclusterManagerPort = lots\n")
    ran = cli("getHosts")
    assert ran.status == 12
    assert "clusterManagerPort" in ran.err
    assert "expected a whole number" in ran.err


def test_ctrl_c_exits_130_quietly(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module.grammar, "parse", interrupted)
    ran = cli("getHosts")
    assert (ran.status, ran.out, ran.err) == (130, "", "")


def test_an_unexpected_error_is_still_one_line(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_module.grammar, "parse", broken)
    ran = cli("getHosts")
    assert ran.status == 1
    assert ran.err.startswith("tashi: error: internal error (RuntimeError: boom)")
    assert "Traceback" not in ran.err


def test_version(cli: Cli) -> None:
    ran = cli("--version")
    assert ran.status == 0
    assert ran.out.startswith("tashi ")


def test_the_client_docs_describe_every_verb_and_option() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "client.md").read_text()
    for verb in ALL_VERBS:
        assert f"#### `{verb.name}`" in docs, verb.name
        for opt in verb.options:
            assert f"`--{opt.name}" in docs, (verb.name, opt.name)
        for example in verb.examples:
            assert example in docs, example
    for _, status, _ in EXIT_CODES:
        assert f"| {status} |" in docs


def _no_client() -> TashiClient:
    raise AssertionError("no connection expected")


def test_register_user_asks_twice_on_a_terminal() -> None:
    answers = iter(["secret-pw-1", "secret-pw-1"])
    ctx = Context(_no_client, lambda prompt: next(answers))
    assert cluster_verbs._new_password(ctx, Args(values={"passwd": None})) == "secret-pw-1"
    differ = iter(["secret-pw-1", "secret-pw-2"])
    ctx = Context(_no_client, lambda prompt: next(differ))
    with pytest.raises(UsageError, match="differ"):
        cluster_verbs._new_password(ctx, Args(values={"passwd": None}))
    short = iter(["short", "short"])
    ctx = Context(_no_client, lambda prompt: next(short))
    with pytest.raises(UsageError, match="at least 8"):
        cluster_verbs._new_password(ctx, Args(values={"passwd": None}))
