"""The fault-injection suite's judges on made-up data (no cluster, no root): each invariant
catches what it is for and excuses exactly what it should (``devcluster/invariants.py``,
``devcluster/leaks.py``, ``devcluster/faults.py``)."""

from __future__ import annotations

import random

from tashi.api.schemas import AddressOut, InstanceOut
from tashi.devcluster.churn import Ask
from tashi.devcluster.faults import Fault, Kind, Outage, choose
from tashi.devcluster.invariants import Crash, StopJudge, one_place, ran_twice, teardowns
from tashi.devcluster.leaks import ClusterLook, HostLook, judge
from tashi.devcluster.qemuwatch import Life
from tashi.devcluster.state import Proc, State
from tests.fixtures.instances import instance_out

HOSTS = {1: "host1", 2: "host2"}
MAC = "52:54:00:00:00:07"


def instance(
    iid: int, state: str, host: int | None, ip: str | None = None, mac: str = MAC
) -> InstanceOut:
    return instance_out(iid, state, host, nics=[{"network": 1, "mac": mac, "ip": ip}])


# --- every instance in one place ------------------------------------------------------------


def test_one_place_accepts_a_running_vm_on_its_host_and_a_suspended_one_nowhere() -> None:
    lives = [Life(7, "host1", 100, 1.0), Life(8, "host2", 101, 1.0, ended=2.0)]
    found = one_place([instance(7, "Running", 1), instance(8, "Suspended", None)], HOSTS, lives)
    assert found == []


def test_one_place_catches_a_vm_on_the_wrong_host_a_copy_and_an_orphan_process() -> None:
    lives = [Life(7, "host2", 100, 1.0), Life(8, "host1", 101, 1.0), Life(9, "host1", 102, 1.0)]
    found = one_place([instance(7, "Running", 1), instance(8, "Suspended", None)], HOSTS, lives)
    assert len(found) == 3
    assert "vm7 (7) is Running on host1, but its qemu processes are: host2 pid 100" in found[0]
    assert "vm8 (8) is Suspended, yet qemu runs: host1 pid 101" in found[1]
    assert "instance 9, which no instance owns" in found[2]


def test_one_place_reports_an_instance_left_unstable() -> None:
    found = one_place([instance(7, "Held", None)], HOSTS, [])
    assert found == ["instance vm7 (7) is Held: not a stable state after the round"]


def test_ran_twice_reports_each_pair_once() -> None:
    pair = (Life(7, "host1", 100, 1.0), Life(7, "host2", 101, 1.5))
    reported: set[tuple[int, int]] = set()
    assert len(ran_twice([pair], reported)) == 1
    assert ran_twice([pair], reported) == []


# --- no VM stopped that no one asked to stop -------------------------------------------------


def unasked(
    lives: list[Life], asks: list[Ask], crashes: list[Crash] | None = None, fresh: float = 0.0
) -> list[str]:
    return StopJudge().unasked(lives, asks, crashes or [], fresh)


def test_an_unasked_end_is_a_violation_once() -> None:
    judge = StopJudge()
    lives = [Life(7, "host1", 100, 1.0, ended=5.0)]
    found = judge.unasked(lives, [], [], 0.0)
    assert len(found) == 1 and "instance 7 on host1 (pid 100" in found[0]
    assert judge.unasked(lives, [], [], 0.0) == []


def test_a_destroy_suspend_or_migration_asked_excuses_the_end() -> None:
    for kind in ("destroy", "suspend", "migrate"):
        lives = [Life(7, "host1", 100, 1.0, ended=5.0)]
        assert unasked(lives, [Ask(7, kind, 4.0)]) == [], kind


def test_a_group_teardown_excuses_the_ends_of_its_members_vms_started_before_it() -> None:
    """A member failed to start: all-or-nothing placement stopped its mates' VMs, both qemu
    processes of a launch in flight among them; a VM started after the teardown is not."""
    history = [("activate", 3.0), ("groupFailed", 4.0), ("rescheduled", 4.5)]
    asks = teardowns(7, history)
    assert asks == [Ask(7, "teardown", 4.0)]
    launch = [Life(7, "host2", 100, 3.5, ended=4.1), Life(7, "host2", 101, 3.6, ended=4.1)]
    assert unasked(launch, asks) == []
    later = [Life(7, "host2", 102, 9.0, ended=12.0)]
    assert len(unasked(later, asks)) == 1
    assert teardowns(7, [("activate", 3.0)]) == []
    # a start in flight at the teardown: its destroy waited for it and ended the VM at once
    in_flight = [Life(7, "host2", 103, 4.8, ended=4.96)]
    assert unasked(in_flight, asks) == []
    much_later = [Life(7, "host2", 104, 40.0, ended=40.5)]
    assert len(unasked(much_later, asks)) == 1
    # its line is written once the node answered the destroy: seconds after the end, on a
    # busy machine; a teardown long after the end explains nothing
    answered_late = [Life(7, "host2", 105, 1.0, ended=1.2)]
    assert unasked(answered_late, [Ask(7, "teardown", 6.0)]) == []
    assert len(unasked(answered_late, [Ask(7, "teardown", 30.0)])) == 1


def test_a_refused_ask_or_a_resume_or_an_ask_after_the_end_does_not() -> None:
    lives = [Life(7, "host1", 100, 1.0, ended=5.0)]
    for ask in (Ask(7, "destroy", 4.0, refused=True), Ask(7, "resume", 4.0), Ask(7, "destroy", 9)):
        assert len(unasked(lives, [ask])) == 1, ask


def test_a_suspend_asked_of_an_earlier_process_does_not_excuse_a_later_one() -> None:
    lives = [Life(7, "host1", 100, 10.0, ended=15.0)]
    assert len(unasked(lives, [Ask(7, "suspend", 4.0)])) == 1


def test_a_failed_migrations_or_restores_target_is_excused_by_it() -> None:
    for kind in ("migrate", "resume"):
        lives = [Life(7, "host2", 100, 5.0, ended=8.0, incoming=True)]
        assert unasked(lives, [Ask(7, kind, 3.0)]) == [], kind


def test_one_migration_explains_one_end_only() -> None:
    """It succeeded (the source ended); the target, killed later behind Tashi's back, is not
    the migration's doing."""
    source = Life(7, "host1", 100, 1.0, ended=5.0)
    target = Life(7, "host2", 101, 4.0, ended=9.0, incoming=True)
    found = unasked([source, target], [Ask(7, "migrate", 4.0)])
    assert len(found) == 1 and "pid 101" in found[0]


def test_a_retried_migration_explains_an_end_per_try() -> None:
    """The cluster manager died during the first try and rolled it back when it came back (the
    target's end); the retry moved the VM (the source's end)."""
    rolled_back = Life(7, "host1", 101, 4.5, ended=20.0, incoming=True)
    source = Life(7, "host2", 100, 1.0, ended=21.0)
    again = Life(7, "host1", 102, 20.5, incoming=True)
    tries = [Ask(7, "migrate", 4.0), Ask(7, "migrate", 20.4)]
    assert unasked([rolled_back, source, again], tries) == []
    assert len(unasked([rolled_back, source, again], tries[:1])) == 1


def test_a_request_of_an_earlier_round_explains_nothing_but_a_destroy() -> None:
    target = Life(7, "host2", 101, 4.0, ended=90.0, incoming=True)
    assert len(unasked([target], [Ask(7, "migrate", 3.0)], fresh=60.0)) == 1
    assert unasked([target], [Ask(7, "destroy", 3.0)], fresh=60.0) == []


def test_a_crashed_hosts_vms_may_end_but_not_another_hosts() -> None:
    crash = Crash("host1", since=10.0, until=20.0)
    fenced = Life(7, "host1", 100, 1.0, ended=17.0)
    elsewhere = Life(8, "host2", 101, 1.0, ended=17.0)
    later = Life(9, "host1", 102, 25.0, ended=40.0)  # started after the node manager was back
    found = unasked([fenced, elsewhere, later], [], [crash])
    assert len(found) == 2
    assert "instance 8" in found[0] and "instance 9" in found[1]


def test_a_daemonize_launcher_is_no_vm_ending_but_its_child_is() -> None:
    launcher = Life(7, "host1", 100, 1.00, ended=1.30)
    child = Life(7, "host1", 101, 1.00)  # forked at once: the same clock tick
    assert unasked([launcher, child], []) == []
    child.ended = 9.0  # killed behind Tashi's back
    found = unasked([launcher, child], [])
    assert len(found) == 1 and "pid 101" in found[0]


# --- nothing leaked ---------------------------------------------------------------------------


def state() -> State:
    return State(
        tag="t",
        fabric="198.18.0.0/20",
        cm_port=1,
        networks=[1],
        cgroup="/x",
        daemons={"tashi-cm": Proc(50, 1)},
        hosts={1: Proc(60, 1), 2: Proc(70, 1)},
    )


def clean_look() -> ClusterLook:
    host1 = HostLook(
        1,
        taps={"tashi7.0": 7},
        networks={"vxbr1": 1, "vxlan1": 1},
        tap_networks={1},
        vm_dirs={7},
        scratch={7},
        processes={60: "tashi-nm", 61: "python -m tashi.nodemanager.watchdog", 100: "qemu"},
    )
    host2 = HostLook(2, processes={70: "tashi-nm", 71: "python -m tashi.nodemanager.watchdog"})
    return ClusterLook(
        hosts=[host1, host2],
        cm_processes={50: "tashi-cm"},
        suspend_files={"8_vm8.gz": 8},
        static_leases={1: {(MAC, "198.19.1.10"), ("52:54:00:00:00:08", "198.19.1.11")}},
        names={1: {"198.19.1.10", "198.19.1.11"}},
        dhcp_leases={1: {(MAC, "198.19.1.10")}},
    )


def judged(look: ClusterLook, addresses: list[AddressOut] | None = None) -> list[str]:
    vm8 = instance(8, "Suspended", None, "198.19.1.11", "52:54:00:00:00:08")
    instances = [instance(7, "Running", 1, "198.19.1.10"), vm8]
    if addresses is None:
        addresses = default_addresses()
    lives = [Life(7, "host1", 100, 1.0)]
    return judge(look, state(), instances, HOSTS, lives, addresses)


def test_a_clean_cluster_has_no_leak() -> None:
    assert judged(clean_look()) == []


def test_each_kind_of_leftover_is_named() -> None:
    look = clean_look()
    look.hosts[1].taps["tashi9.0"] = 9
    look.hosts[1].vm_dirs.add(9)
    look.hosts[1].scratch.add(9)
    look.hosts[1].networks["vxbr2"] = 2
    look.hosts[1].processes[72] = "qemu-img create"
    look.cm_processes[51] = "dnsmasq --stray"
    look.suspend_files["9_vm9.gz.partial"] = 9
    look.static_leases[1].add(("52:54:00:00:00:09", "198.19.1.12"))
    look.names[1].add("198.19.1.12")
    look.dhcp_leases[1].add(("52:54:00:00:00:09", "198.19.1.12"))
    gone = AddressOut(network=1, ip="198.19.1.12", instanceId=9, nicIndex=0)
    found = "\n".join(judged(look, [*default_addresses(), gone]))
    for text in (
        "host2: tap tashi9.0 of instance 9",
        "host2: VM directory of instance 9",
        "host2: overlay directory of instance 9",
        "host2: vxbr2 of network 2, which no tap there is on",
        "host2: stray process 72: qemu-img create",
        "cluster manager's namespace: stray process 51",
        "suspend file 9_vm9.gz.partial left: its instance is gone",
        "static lease 52:54:00:00:00:09 198.19.1.12 of no instance's NIC",
        "DNS name for 198.19.1.12",
        "DHCP lease 52:54:00:00:00:09 198.19.1.12 of no NIC",
        "address 198.19.1.12 (net1) of instance 9, gone",
    ):
        assert text in found, text


def default_addresses() -> list[AddressOut]:
    return [
        AddressOut(network=1, ip="198.19.1.10", instanceId=7, nicIndex=0),
        AddressOut(network=1, ip="198.19.1.11", instanceId=8, nicIndex=0),
    ]


def test_what_is_missing_is_named_too() -> None:
    look = clean_look()
    look.hosts[0].taps.clear()
    look.hosts[0].vm_dirs.clear()
    look.hosts[0].processes.pop(61)
    look.suspend_files.clear()
    look.static_leases[1].clear()
    found = "\n".join(judged(look, default_addresses()[:1]))
    for text in (
        "host1: instance 7 runs there without its tap",
        "host1: instance 7 runs there without its VM directory",
        "host1: no watchdog runs",
        "instance 8 is Suspended without a suspend file",
        "NIC 52:54:00:00:00:07 198.19.1.10 has no static lease",
        "vm8 NIC 0 has 198.19.1.11, not in the address table",
    ):
        assert text in found, text


# --- faults -----------------------------------------------------------------------------------


def test_faults_are_drawn_from_the_seed() -> None:
    one = [choose(random.Random(5), k, [1, 2, 3], [1], 6.0) for k in Kind]
    two = [choose(random.Random(5), k, [1, 2, 3], [1], 6.0) for k in Kind]
    assert one == two
    assert [f.target.split(":")[0] for f in one] == ["cm", "scheduler", "nm", "dnsmasq"]
    long = choose(random.Random(1), Kind.NM, [2], [1], 6.0, long_odds=1.0)
    assert long.target == "nm:2" and long.host == "host2" and 8.0 <= long.down <= 14.0
    short = choose(random.Random(1), Kind.DNSMASQ, [2], [1], 6.0, long_odds=1.0)
    assert short.down <= 3.0  # only node managers and the cluster manager stay down long


def test_a_node_manager_back_late_or_never_counts_as_a_crashed_host() -> None:
    fault = Fault(Kind.NM, "nm:2", 0.0, 1.0)
    assert not Outage(fault, killed=10.0, back=13.0).crashed(safe=4.0)
    assert Outage(fault, killed=10.0, back=15.0).crashed(safe=4.0)
    assert Outage(fault, killed=10.0).crashed(safe=4.0)
    assert not Outage(Fault(Kind.CM, "cm", 0.0, 30.0), killed=10.0, back=40.0).crashed(4.0)


def test_an_instance_in_flight_is_left_to_one_place() -> None:
    look = clean_look()
    look.hosts[1].taps["tashi9.0"] = 9
    look.hosts[1].vm_dirs.add(9)
    look.suspend_files["9_vm9.gz.partial"] = 9
    vm9 = instance(9, "Suspending", 2)
    found = judge(look, state(), [instance(7, "Running", 1, "198.19.1.10"), vm9], HOSTS, [], [])
    assert not [f for f in found if "instance 9" in f or "9_vm9" in f], found
