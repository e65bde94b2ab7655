"""Parsing of the control daemon's chat messages (``tashi.xmpp.commands``): the seed's
createcompute verbatim, the other commands, and clear errors for everything else."""

from __future__ import annotations

import pytest

from tashi.domain.errors import InvalidInput
from tashi.xmpp.commands import (
    AdaptCompute,
    CreateCompute,
    DeleteCompute,
    Help,
    RegisterUser,
    UnregisterUser,
    parse,
)
from tests.xmpp import seed


def test_the_seeds_createcompute_verbatim() -> None:
    assert parse(seed.createcompute(3)) == CreateCompute(
        hostname="tizzy3",
        memory=512,
        cores=1,
        image="tashi",
        ism_user=1000,
        resource_id="a626bbb4-6c92-4f0e-a117-ae11ec502a6e3",
        sla="gold",
        template="ubuntu-9.10",
        location="ie",
    )


def test_a_bare_compute_object_and_defaults() -> None:
    command = parse('createcompute {"hostname": "a", "memory_size": 64, "imageIdentifier": "x"}')
    assert command == CreateCompute(hostname="a", memory=64, cores=1, image="x")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("createcompute", "needs the Compute as JSON"),
        ("createcompute [{", "does not parse"),
        ("createcompute 12", "expected [compute, categories, links]"),
        ('createcompute [{"memory_size": 64, "imageIdentifier": "x"}]', "hostname"),
        (
            'createcompute {"hostname": "a", "memory_size": -1, "imageIdentifier": "x"}',
            "memory_size",
        ),
        (
            'createcompute {"hostname": "a", "memory_size": true, "imageIdentifier": "x"}',
            "memory_size",
        ),
        ('createcompute {"hostname": "a", "memory_size": 64}', "imageIdentifier"),
        ('createcompute [{"hostname": "a"}, 7, []]', "list of categories"),
        ("", "unknown command '(empty)'"),
        ("frobnicate now", "unknown command 'frobnicate'"),
        ("deletecompute", "one instance id"),
        ("deletecompute 1 2", "one instance id"),
        ("adaptcompute 1", "needs an id and JSON"),
        ("adaptcompute 1 {}", "give one of"),
        ("adaptcompute 1 [1]", "expected a JSON object"),
        ('adaptcompute 1 {"cpu_share": "many"}', "cpu_share"),
        ("adaptCpuShare --share 5", "needs --share N --instance ID"),
        ("adaptCpuShare --share x --instance 3", "must be a whole number"),
        ("registerUser --name a", "needs --name N --passwd P"),
        ("registerUser --name a --name b --passwd c", "given twice"),
        ("registerUser --name a --passwd 'c", "quotation"),
        ("registerUser --name a --passwd p --role admin", "unknown option '--role'"),
        ("unregisterUser", "needs --userId ID"),
        ("x" * 70000, "longer than"),
    ],
)
def test_bad_messages_say_what_is_wrong(body: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    assert says in caught.value.message


def test_the_other_commands() -> None:
    assert parse("deletecompute 10") == DeleteCompute("10")
    assert parse("  DELETECOMPUTE tizzy3 ") == DeleteCompute("tizzy3")
    assert parse('adaptcompute 3 {"cpu_share": 1500}') == AdaptCompute("3", cpu_share=1500)
    assert parse('adaptcompute 3 {"memory_size": 256, "cpu_cores": 2}') == AdaptCompute(
        "3", memory=256, cores=2
    )
    assert parse("adaptCpuShare --share 1500 --instance 3") == AdaptCompute("3", cpu_share=1500)
    assert parse("adaptMemoryLimit --limit 512 --instance 3") == AdaptCompute("3", memory=512)
    assert parse("registerUser --name mihas --passwd mihas12 --priority 12") == RegisterUser(
        "mihas", "mihas12", 12
    )
    assert parse("registerUser --name 'a b' --passwd \"p w\"") == RegisterUser("a b", "p w", 0)
    assert parse("unregisterUser --userId 1") == UnregisterUser("1")
    assert parse("unregisterUser --name mihas") == UnregisterUser("mihas")
    assert parse("help") == Help()


def test_a_password_is_never_shown() -> None:
    assert "secret-pw" not in repr(parse("registerUser --name a --passwd secret-pw"))
