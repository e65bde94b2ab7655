"""One contract over every policy, on crafted snapshots: what any placement policy must do."""

from __future__ import annotations

import random
from types import MappingProxyType

import pytest

from tashi.domain.errors import InvalidInput
from tashi.scheduler.policies import registry
from tashi.scheduler.policies.base import Policy, PolicyOptions
from tashi.scheduler.snapshot import Limits, Snapshot
from tests.scheduler.crafted import host, random_cluster, request

NAMES = sorted(registry.POLICIES)


@pytest.fixture(params=NAMES)
def policy(request: pytest.FixtureRequest) -> Policy:
    return registry.create(request.param, PolicyOptions())


def snapshot(*hosts: object, pending: tuple[object, ...] = ()) -> Snapshot:
    return Snapshot(hosts=tuple(hosts), pending=tuple(pending))  # type: ignore[arg-type]


def test_it_places_on_a_host_with_room(policy: Policy) -> None:
    vm = request(1, memory=1024)
    s = snapshot(host(1, memory=512), host(2, memory=2048), pending=(vm,))
    assert policy.plan(s).candidates(vm).hosts[0] == 2


def test_it_skips_hosts_down_drained_or_reserved_for_others(policy: Policy) -> None:
    vm = request(1, user=7)
    s = snapshot(
        host(1, up=False),
        host(2, state="Drained"),
        host(3, reserved=(8,)),
        host(4, state="VersionMismatch"),
        pending=(vm,),
    )
    decision = policy.plan(s).candidates(vm)
    assert decision.hosts == ()
    assert decision.reason


def test_a_reserved_host_takes_its_users_without_a_hint(policy: Policy) -> None:
    vm = request(1, user=8)
    s = snapshot(host(1, reserved=(8,)), pending=(vm,))
    assert policy.plan(s).candidates(vm).hosts == (1,)


def test_no_room_gives_a_readable_reason(policy: Policy) -> None:
    vm = request(1, memory=8192, cores=2)
    s = snapshot(host(1, memory=4096), host(2, cores=1), pending=(vm,))
    decision = policy.plan(s).candidates(vm)
    assert decision.hosts == ()
    assert decision.reason is not None and "8192 MB" in decision.reason


def test_refused_hosts_are_not_offered_again(policy: Policy) -> None:
    vm = request(1)
    s = snapshot(host(1), host(2), host(3), pending=(vm,))
    assert set(policy.plan(s).candidates(vm, frozenset({1, 3})).hosts) == {2}


def test_target_host_and_allow_elsewhere(policy: Policy) -> None:
    aimed = request(1, hints={"targetHost": "h3"})
    by_id = request(2, hints={"targetHost": "2"})
    full = request(3, memory=4000, hints={"targetHost": "h1"})
    anywhere = request(4, memory=4000, hints={"targetHost": "h1", "allowElsewhere": "True"})
    s = snapshot(host(1, memory=1024), host(2), host(3), pending=(aimed, by_id, full, anywhere))
    planner = policy.plan(s)
    assert planner.candidates(aimed).hosts == (3,)
    assert planner.candidates(by_id).hosts == (2,)
    waiting = planner.candidates(full)
    assert waiting.hosts == () and "h1" in (waiting.reason or "")
    assert set(planner.candidates(anywhere).hosts) <= {2, 3}
    assert planner.candidates(anywhere).hosts


def test_a_target_host_that_is_down_is_waited_for(policy: Policy) -> None:
    vm = request(1, hints={"targetHost": "h1"})
    s = snapshot(host(1, up=False), host(2), pending=(vm,))
    decision = policy.plan(s).candidates(vm)
    assert decision.hosts == () and "down" in (decision.reason or "")


def test_a_persistent_disk_in_use_waits(policy: Policy) -> None:
    vm = request(1, persistent="db.qcow2")
    s = Snapshot(hosts=(host(1),), pending=(vm,), persistent_uses=MappingProxyType({"db.qcow2": 2}))
    decision = policy.plan(s).candidates(vm)
    assert decision.hosts == () and "db.qcow2" in (decision.reason or "")


def test_the_queue_keeps_every_instance_once(policy: Policy) -> None:
    s = random_cluster(random.Random(3), 5, 30)
    ordered = policy.order(s.pending)
    assert sorted(r.id for r in ordered) == [r.id for r in s.pending]


@pytest.mark.parametrize("seed", range(8))
def test_placing_a_whole_queue_never_over_commits(policy: Policy, seed: int) -> None:
    rng = random.Random(seed)
    s = random_cluster(rng, 20, 200)
    planner = policy.plan(s)
    used = {h.id: [h.used_memory, h.used_cores] for h in s.hosts}
    for vm in policy.order(s.pending):
        decision = planner.candidates(vm)
        if not decision.hosts:
            assert decision.reason
            continue
        chosen = rng.choice(decision.hosts)  # any candidate must be a valid one
        target = s.hosts[s.index[chosen]]
        assert target.usable and target.allows(vm.user_id)
        used[chosen][0] += vm.memory
        used[chosen][1] += vm.cores
        assert used[chosen][0] <= target.memory and used[chosen][1] <= target.cores
        planner.placed(vm, chosen)
    # Released capacity is offered again.
    vm = s.pending[0]
    full = [h.id for h in s.hosts if h.usable and h.allows(vm.user_id)]
    if full and not planner.candidates(vm).hosts:
        planner.placed(vm, full[0])
        planner.released(vm, full[0])
        assert not planner.candidates(vm).hosts


def test_over_commit_rates_let_more_in(policy: Policy) -> None:
    name = policy.name
    rated = registry.create(name, PolicyOptions(limits=Limits(cores_over_rate=2.0)))
    s = snapshot(host(1, cores=2, used_cores=2, instances=2), pending=(request(1),))
    assert policy.plan(s).candidates(request(1)).hosts == ()
    assert rated.plan(s).candidates(request(1)).hosts == (1,)


def test_unknown_policies_are_refused() -> None:
    with pytest.raises(InvalidInput, match="known: primitive"):
        registry.create("roundrobin", PolicyOptions())
    assert registry.create("tashi.scheduler.ConsolidatedScheduler", PolicyOptions()).name == (
        "consolidated"
    )
