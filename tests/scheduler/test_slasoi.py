"""The SLA@SOI policies: priority order, [Servers] ratings, load, consolidation, migrations."""

from __future__ import annotations

from types import MappingProxyType

from tashi.scheduler.policies.balanced import Balanced
from tashi.scheduler.policies.base import PolicyOptions
from tashi.scheduler.policies.consolidated import Consolidated
from tashi.scheduler.policies.priority import Priority
from tashi.scheduler.snapshot import Limits, Running, Snapshot
from tests.scheduler.crafted import host, request


def test_user_priority_orders_the_queue() -> None:
    queue = [request(1, priority=0), request(2, priority=12), request(3, priority=12)]
    for policy in (
        Priority(PolicyOptions()),
        Balanced(PolicyOptions()),
        Consolidated(PolicyOptions()),
    ):
        assert [r.id for r in policy.order(queue)] == [2, 3, 1]


def test_servers_ratings_go_to_high_priority_users_first() -> None:
    options = PolicyOptions(servers=MappingProxyType({1: 3, 2: 2, 3: 1, 4: 4}), high_priority=5)
    s = Snapshot(hosts=tuple(host(i) for i in range(1, 5)))
    planner = Priority(options).plan(s)
    assert planner.candidates(request(1, priority=9)).hosts[0] == 4
    assert planner.candidates(request(2, priority=0)).hosts[0] == 3


def test_balanced_picks_the_least_loaded_and_consolidated_the_busiest() -> None:
    s = Snapshot(
        hosts=(
            host(1, used_memory=1024, used_cores=1, instances=1),
            host(2),
            host(3, used_memory=3000, used_cores=3, instances=3),
        )
    )
    assert Balanced(PolicyOptions()).plan(s).candidates(request(1)).hosts[0] == 2
    assert Consolidated(PolicyOptions()).plan(s).candidates(request(1)).hosts[0] == 3


def test_the_load_expression_decides() -> None:
    s = Snapshot(hosts=(host(1, load=5.0), host(2, load=0.5, used_memory=2048, instances=1)))
    by_cpu = PolicyOptions(load_expression="cpuUsage")
    by_memory = PolicyOptions(load_expression="memUsage")
    assert Balanced(by_cpu).plan(s).candidates(request(1)).hosts[0] == 2
    assert Balanced(by_memory).plan(s).candidates(request(1)).hosts[0] == 1


def test_consolidation_fills_a_host_before_opening_the_next() -> None:
    s = Snapshot(hosts=(host(1, cores=2), host(2, cores=2), host(3, cores=2)))
    policy = Consolidated(PolicyOptions())
    planner = policy.plan(s)
    chosen = []
    for i in range(6):
        vm = request(i + 1)
        hid = planner.candidates(vm).hosts[0]
        planner.placed(vm, hid)
        chosen.append(hid)
    assert chosen[0] == chosen[1] and chosen[2] == chosen[3] and chosen[4] == chosen[5]
    assert len(set(chosen)) == 3


def test_optimal_consolidation_places_larger_vms_first() -> None:
    queue = [request(1, memory=128), request(2, memory=2048), request(3, memory=512)]
    policy = Consolidated(PolicyOptions(optimal_consolidation=True))
    assert [r.id for r in policy.order(queue)] == [2, 3, 1]


def test_minimal_vm_memory_counts_small_vms_bigger() -> None:
    s = Snapshot(hosts=(host(1, memory=200),))
    options = PolicyOptions(limits=Limits(minimal_vm_memory=256))
    assert Priority(options).plan(s).candidates(request(1, memory=64)).hosts == ()
    assert Priority(PolicyOptions()).plan(s).candidates(request(1, memory=64)).hosts == (1,)


def test_cpu_speed_over_rate_bounds_fast_cores() -> None:
    s = Snapshot(hosts=(host(1, cores=4, used_cores=2, instances=2, cpu_speed=2000),))
    strict = PolicyOptions(limits=Limits(cores_over_rate=4, check_cpu_speed=True))
    loose = PolicyOptions(
        limits=Limits(cores_over_rate=4, cpu_speed_over_rate=2, check_cpu_speed=True)
    )
    vm = request(1, cores=3)
    assert Priority(strict).plan(s).candidates(vm).hosts == ()
    assert Priority(loose).plan(s).candidates(vm).hosts == (1,)


def _placed(*vms: tuple[int, int, int]) -> tuple[Running, ...]:
    return tuple(Running(i, f"vm{i}", h, m, 1, "Running") for i, h, m in vms)


def test_auto_migrations_empty_the_least_loaded_host() -> None:
    s = Snapshot(
        hosts=(
            host(1, used_memory=2048, used_cores=2, instances=2),
            host(2, used_memory=512, used_cores=1, instances=1),
            host(3),
        ),
        placed=_placed((10, 1, 1024), (11, 1, 1024), (12, 2, 512)),
    )
    assert Consolidated(PolicyOptions()).migrations(s) == []
    moves = Consolidated(PolicyOptions(auto_migrations=True)).migrations(s)
    assert [(m.instance_id, m.target_host_id) for m in moves] == [(12, 1)]
    busy = Snapshot(hosts=s.hosts, placed=s.placed, pending=(request(1),))
    assert Consolidated(PolicyOptions(auto_migrations=True)).migrations(busy) == []


def test_reschedule_after_start_rebalances_one_vm() -> None:
    s = Snapshot(
        hosts=(host(1, used_memory=3072, used_cores=3, instances=3), host(2)),
        placed=_placed((10, 1, 1024), (11, 1, 1024), (12, 1, 1024)),
    )
    assert Balanced(PolicyOptions()).migrations(s) == []
    moves = Balanced(PolicyOptions(reschedule_after_start=True)).migrations(s)
    assert len(moves) == 1 and moves[0].target_host_id == 2
