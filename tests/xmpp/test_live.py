"""``tashi-xmpp`` and the XMPP event publisher on a live virtual cluster with real QEMU guests
and a real prosody (``conftest.xmpp_cluster``), driven by a slixmpp client as the SLA@SOI ISM.

The tests share the cluster and run in file order; each leaves no VM behind.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tashi.api.schemas import DiskIn, InstanceIn
from tashi.devcluster import processes, xmppsetup
from tests.xmpp import seed
from tests.xmpp.client import Ism, Received
from tests.xmpp.conftest import XmppCluster

TINY = "tashi-tiny.qcow2"


def answers(ism: Ism, cluster: XmppCluster) -> list[dict[str, Any]]:
    return ism.documents(cluster.daemon_jid)


def events(ism: Ism, cluster: XmppCluster) -> list[dict[str, Any]]:
    return ism.documents(cluster.publisher_jid)


def with_status(docs: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("status") == status]


def of_command(docs: list[dict[str, Any]], *commands: str) -> list[dict[str, Any]]:
    """The answers to these commands (prosody keeps what came while no ISM was logged in, and
    hands it to the next: earlier tests' late answers and events arrive too)."""
    return [d for d in docs if d.get("command") in commands]


def to_requests(docs: list[dict[str, Any]], requests: list[str]) -> list[dict[str, Any]]:
    """The error answers to ``requests``, in their order."""
    by_request = {d["request"]: d for d in docs if "request" in d}
    return [by_request[r[:100]] for r in requests if r[:100] in by_request]


def tizzies(
    docs: list[dict[str, Any]], status: str, ids: set[int] | None = None
) -> list[dict[str, Any]]:
    """createcompute answers of tizzy0 .. tizzy9 with ``status`` (of ``ids`` if given)."""
    names = {f"tizzy{i}" for i in range(10)}
    return [
        d
        for d in of_command(docs, "createcompute", "deletecompute")
        if d.get("status") == status
        and (d.get("hostname") in names if ids is None else d.get("id") in ids)
    ]


def wait_gone(cluster: XmppCluster, ids: list[int], timeout: float = 120.0) -> None:
    admin = cluster.running.admin

    def gone() -> bool:
        left = {i.id for i in admin.get_instances()}
        return not left & set(ids)

    processes.wait_for("the VMs to be gone", gone, timeout, error=AssertionError)


@pytest.mark.timeout(600)
def test_the_seeds_ten_createcompute_run_ten_vms_and_answer_each_when_it_runs(
    xmpp_cluster: XmppCluster,
) -> None:
    cluster = xmpp_cluster
    admin = cluster.running.admin

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        ism = await cluster.ism()
        try:
            began = time.monotonic()
            for i in range(10):  # the seed's loop
                ism.say(cluster.daemon_jid, seed.createcompute(i))
            await ism.wait_for(
                "ten acknowledgements",
                lambda _: len(tizzies(answers(ism, cluster), "accepted")) == 10,
                60,
            )
            ids = {d["id"] for d in tizzies(answers(ism, cluster), "accepted")}
            await ism.wait_for(
                "ten completions",
                lambda _: len(tizzies(answers(ism, cluster), "running", ids)) == 10,
                400,
            )
            took = time.monotonic() - began
            for i in sorted(ids):  # deletecompute, each
                ism.say(cluster.daemon_jid, f"deletecompute {i}")
            await ism.wait_for(
                "ten deletions",
                lambda _: len(tizzies(answers(ism, cluster), "deleted", ids)) == 10,
                120,
            )
            return answers(ism, cluster), took
        except AssertionError:
            print(cluster.log_tail())
            raise
        finally:
            await ism.close()

    docs, took = asyncio.run(scenario())
    print(f"ten createcompute to ten Running VMs: {took:.1f} s")
    accepted = tizzies(docs, "accepted")
    assert sorted(d["hostname"] for d in accepted) == [f"tizzy{i}" for i in range(10)]
    ids = {d["id"] for d in accepted}
    completions = tizzies(docs, "running", ids)
    running = {d["id"]: d for d in completions}
    # answered at once (the VM still Pending), and again, later, when it ran
    assert all(d["state"] == "Pending" for d in accepted)
    assert all(docs.index(d) < docs.index(running[d["id"]]) for d in accepted)
    assert set(running) == ids
    assert all(d["state"] == "Running" and d["hostId"] is not None for d in running.values())
    assert {d["resourceId"] for d in running.values()} == {
        f"a626bbb4-6c92-4f0e-a117-ae11ec502a6e{i}" for i in range(10)
    }
    assert {d["id"] for d in tizzies(docs, "deleted", ids)} == ids
    wait_gone(cluster, list(running))
    assert not [i for i in admin.get_instances() if i.name.startswith("tizzy")]


def test_createcompute_maps_the_seeds_fields_onto_createvm(xmpp_cluster: XmppCluster) -> None:
    cluster = xmpp_cluster
    admin = cluster.running.admin

    async def scenario() -> dict[str, Any]:
        ism = await cluster.ism()
        try:
            ism.say(cluster.daemon_jid, seed.createcompute(42))
            await ism.wait_for(
                "the acknowledgement",
                lambda _: any(d.get("hostname") == "tizzy42" for d in answers(ism, cluster)),
                60,
            )
            return next(d for d in answers(ism, cluster) if d.get("hostname") == "tizzy42")
        finally:
            await ism.close()

    ack = asyncio.run(scenario())
    vm = admin.get_instance(ack["id"])
    try:
        assert (vm.name, vm.memory, vm.cores, vm.cpuShare) == ("tizzy42", 512, 1, 2048)  # gold
        assert vm.disks[0].uri == TINY  # imageIdentifier "tashi", through [XMPP] imageMap
        assert vm.hints["slaLevel"] == "gold"
        assert vm.hints["template"] == "ubuntu-9.10"
        assert vm.hints["location"] == "ie"
        assert vm.hints["ismUserId"] == "1000"
        assert vm.user == xmppsetup.DAEMON_USER
    finally:
        admin.destroy_vm(vm.id)
        wait_gone(cluster, [vm.id])


def test_register_and_unregister_user(xmpp_cluster: XmppCluster) -> None:
    cluster = xmpp_cluster
    admin = cluster.running.admin

    def mine(ism: Ism) -> list[dict[str, Any]]:
        return of_command(answers(ism, cluster), "registerUser", "unregisterUser")

    async def scenario() -> list[dict[str, Any]]:
        ism = await cluster.ism()
        try:
            ism.say(
                cluster.daemon_jid, "registerUser --name mihas --passwd mihas-pass-12 --priority 12"
            )
            await ism.wait_for("an answer", lambda _: len(mine(ism)) == 1, 30)
            user_id = mine(ism)[0]["userId"]
            assert admin.get_user("mihas").priority == 12
            ism.say(cluster.daemon_jid, "registerUser --name short --passwd mihas12")  # the seed's
            await ism.wait_for("an answer", lambda _: len(mine(ism)) == 2, 30)
            ism.say(cluster.daemon_jid, f"unregisterUser --userId {user_id}")
            await ism.wait_for("an answer", lambda _: len(mine(ism)) == 3, 30)
            return mine(ism)
        finally:
            await ism.close()

    registered, short, unregistered = asyncio.run(scenario())
    assert registered["status"] == "done"
    assert short["status"] == "error" and short["error"] == "invalid_input"
    assert "8 characters" in short["message"]
    assert unregistered == {
        "command": "unregisterUser",
        "status": "done",
        "userId": registered["userId"],
    }
    assert "mihas" not in {u.name for u in admin.get_users()}


def test_malformed_messages_get_a_clear_error_and_the_daemon_goes_on(
    xmpp_cluster: XmppCluster,
) -> None:
    cluster = xmpp_cluster
    bad = [
        "createcompute [{",
        'createcompute [{"hostname": "x"}, [], []]',
        "frobnicate 12",
        "deletecompute",
        "deletecompute no-such-vm",
        'adaptcompute 1 {"memory_size": 1024}',
    ]

    async def scenario() -> list[dict[str, Any]]:
        ism = await cluster.ism()
        try:
            for body in [*bad, "help"]:
                ism.say(cluster.daemon_jid, body)
            await ism.wait_for(
                "the answers",
                lambda _: (
                    len(to_requests(answers(ism, cluster), bad)) == len(bad)
                    and bool(of_command(answers(ism, cluster), "help"))
                ),
                60,
            )
            docs = answers(ism, cluster)
            return [*to_requests(docs, bad), of_command(docs, "help")[0]]
        finally:
            await ism.close()

    docs = asyncio.run(scenario())
    errors, last = docs[:-1], docs[-1]
    assert [d["status"] for d in errors] == ["error"] * len(bad)
    assert "does not parse" in errors[0]["message"]
    assert "memory_size" in errors[1]["message"]
    assert "unknown command 'frobnicate'" in errors[2]["message"]
    assert "deletecompute needs" in errors[3]["message"]
    assert errors[4]["error"] == "not_found"
    assert errors[5]["error"] == "invalid_state" and "memory" in errors[5]["message"]
    assert last["command"] == "help" and last["status"] == "done"


def test_messages_from_an_unknown_jid_are_ignored(xmpp_cluster: XmppCluster) -> None:
    cluster = xmpp_cluster
    admin = cluster.running.admin
    password = "stranger-password-1"
    stranger_jid = cluster.server.register("stranger", password)

    async def scenario() -> tuple[list[Received], list[dict[str, Any]]]:
        stranger = cluster.client(stranger_jid, password)
        await stranger.start(cluster.server.host, cluster.server.port)
        ism = await cluster.ism()
        try:
            stranger.say(cluster.daemon_jid, seed.createcompute(77))
            stranger.say(cluster.daemon_jid, "registerUser --name evil --passwd evil-password-1")
            await asyncio.to_thread(
                processes.wait_for,
                "the daemon to log the stranger",
                lambda: cluster.daemon_log().count("ignored a message from stranger@") >= 2,
                30,
                error=AssertionError,
            )
            ism.say(cluster.daemon_jid, "help")  # and the daemon still answers the ISM
            await ism.wait_for(
                "the answer", lambda _: bool(of_command(answers(ism, cluster), "help")), 30
            )
            return list(stranger.inbox), of_command(answers(ism, cluster), "help")
        finally:
            await stranger.close()
            await ism.close()

    stranger_inbox, ism_answers = asyncio.run(scenario())
    assert stranger_inbox == []
    assert ism_answers[0]["command"] == "help"
    assert not [i for i in admin.get_instances() if i.name == "tizzy77"]
    assert "evil" not in {u.name for u in admin.get_users()}


@pytest.mark.timeout(400)
def test_the_publisher_sends_create_adapt_migrate_destroy_in_order(
    xmpp_cluster: XmppCluster,
) -> None:
    cluster = xmpp_cluster
    admin = cluster.running.admin

    async def scenario() -> list[dict[str, Any]]:
        ism = await cluster.ism()
        try:
            vm = await asyncio.to_thread(
                admin.create_vm, InstanceIn(name="mover", memory=128, disks=[DiskIn(uri=TINY)])
            )
            mine = lambda: [e for e in events(ism, cluster) if e.get("instanceId") == vm.id]  # noqa: E731
            await ism.wait_for(
                "Running", lambda _: any(e.get("current") == "Running" for e in mine()), 120
            )
            ism.say(
                cluster.daemon_jid, f'adaptcompute {vm.id} {{"cpu_share": 1500}}'
            )  # reprovision
            await ism.wait_for(
                "the answer and the event",
                lambda _: (
                    any(e["type"] == "instance.adapted" for e in mine())
                    and bool(of_command(answers(ism, cluster), "adaptcompute"))
                ),
                60,
            )
            adapted = of_command(answers(ism, cluster), "adaptcompute")
            assert adapted and adapted[-1]["status"] == "done" and adapted[-1]["cpuShare"] == 1500
            placed = await asyncio.to_thread(admin.get_instance, vm.id)
            other = next(h.id for h in admin.get_hosts() if h.id != placed.hostId)
            await asyncio.to_thread(admin.migrate_vm, vm.id, other)
            await ism.wait_for(
                "migrated", lambda _: any(e["type"] == "instance.migrated" for e in mine()), 180
            )
            await asyncio.to_thread(admin.destroy_vm, vm.id)
            await ism.wait_for(
                "destroyed", lambda _: any(e["type"] == "instance.destroyed" for e in mine()), 120
            )
            # the same documents on the pubsub node ([XMPP] pubsubService/pubsubNode)
            items = await ism.pubsub_items(cluster.server.pubsub, "tashi/events")
            assert items and all("seq" in item and "type" in item for item in items)
            return mine()
        finally:
            await ism.close()

    mine = asyncio.run(scenario())
    types = [e["type"] for e in mine]
    assert types[0] == "instance.created" and types[-1] == "instance.destroyed", types
    assert "instance.migrated" in types
    adapted = mine[types.index("instance.adapted")]
    assert adapted["changes"] == {"cpuShare": 1500} and adapted["instance"]["cpuShare"] == 1500
    assert types.index("instance.adapted") < types.index("instance.migrated")
    seqs = [e["seq"] for e in mine]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    states = [e.get("current") for e in mine]
    assert states.index("MigrateTrans") < types.index("instance.migrated")
    migrated = mine[types.index("instance.migrated")]
    assert migrated["previous"] == "MigrateTrans"
    host_before = next(e for e in mine if e.get("current") == "Running")["instance"]["hostId"]
    assert migrated["instance"]["hostId"] != host_before


@pytest.mark.timeout(400)
def test_losing_prosody_leaves_the_cluster_manager_unaffected(xmpp_cluster: XmppCluster) -> None:
    cluster = xmpp_cluster
    admin = cluster.running.admin
    state = cluster.running.state
    prosody = state.daemons[xmppsetup.PROSODY_KEY]

    async def before() -> None:
        ism = await cluster.ism()
        try:
            ism.say(cluster.daemon_jid, "help")
            await ism.wait_for(
                "an answer", lambda _: bool(of_command(answers(ism, cluster), "help")), 30
            )
        finally:
            await ism.close()

    asyncio.run(before())
    crashed = cluster.running.cli("rm", "prosody")  # SIGKILL, by pid
    assert crashed.returncode == 0, crashed.stdout + crashed.stderr
    assert not processes.alive(prosody.pid, prosody.started)
    slowest = 0.0
    ids: list[int] = []
    for n in range(3):  # the cluster manager works on, and its events queue meanwhile
        began = time.monotonic()
        vm = admin.create_vm(InstanceIn(name=f"outage{n}", memory=128, disks=[DiskIn(uri=TINY)]))
        admin.get_hosts()
        slowest = max(slowest, time.monotonic() - began)
        ids.append(vm.id)
    processes.wait_for(
        "the VMs to run without XMPP",
        lambda: all(admin.get_instance(i).state == "Running" for i in ids),
        180,
        error=AssertionError,
    )
    for _ in range(20):
        began = time.monotonic()
        admin.get_instances()
        slowest = max(slowest, time.monotonic() - began)
    print(f"slowest API call while prosody was down: {slowest * 1000:.0f} ms")
    assert slowest < 2.0  # not waiting on XMPP (a stuck handler would take the 15 s timeout)

    started = cluster.running.cli("add", "prosody")  # the same command, config and accounts
    assert started.returncode == 0, started.stdout + started.stderr

    async def after() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ism = await cluster.ism()
        try:  # the daemon logs in again by itself, and answers
            ism.say(cluster.daemon_jid, "help")
            await ism.wait_for(
                "an answer", lambda _: bool(of_command(answers(ism, cluster), "help")), 60
            )
            for i in ids:
                await asyncio.to_thread(admin.destroy_vm, i)
            await ism.wait_for(  # the publisher is back, and tells what happens now
                "the destructions",
                lambda _: (
                    {
                        e.get("instanceId")
                        for e in events(ism, cluster)
                        if e["type"] == "instance.destroyed"
                    }
                    >= set(ids)
                ),
                120,
            )
            return of_command(answers(ism, cluster), "help"), events(ism, cluster)
        except AssertionError:
            print(cluster.log_tail())
            log = cluster.server.root / "prosody.log"
            print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
            raise
        finally:
            await ism.close()

    got_answers, got_events = asyncio.run(after())
    assert got_answers[0]["command"] == "help"
    # what the cluster manager did while prosody was down was queued, and sent once it was back
    # (before the destructions, in order)
    created = [e for e in got_events if e["type"] == "instance.created" and e["instanceId"] in ids]
    destroyed = [e for e in got_events if e["type"] == "instance.destroyed"]
    assert {e["instanceId"] for e in created} == set(ids)
    first_destroyed = min(e["seq"] for e in destroyed if e["instanceId"] in ids)
    assert max(e["seq"] for e in created[:3]) < first_destroyed
    if len(created) > 3:  # seen once: an id created again after its destruction (adopted?)
        for i in {e["instanceId"] for e in created[3:]}:
            print(f"instance {i} created again:", admin.get_instance_history(i))
    wait_gone(cluster, ids)
