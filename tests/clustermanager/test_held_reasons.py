"""Every way into Held leaves a reason a user can read (issue 14.4): the instance's ``reason``
and a line in its history (``getInstanceHistory``).

``PATHS`` lists each code path that holds an instance, with the (state, action) row of the state
table it performs; one test runs each through the service code. Two guards keep the list whole:
every (state, action) -> Held row of ``INSTANCE_TRANSITIONS`` has a path, and every module of the
cluster manager that names an action leading to Held is one the paths cover. A new row or a new
caller fails them until its path is added here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import tashi
from tashi.domain.errors import TashiError
from tashi.domain.hints import new_start, with_start
from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Instance
from tashi.domain.nodes import Heartbeat
from tashi.domain.operations import DiskRequest, VmRequest
from tashi.domain.states import DEADLINES, INSTANCE_TRANSITIONS, Action, InstanceState
from tashi.storage.contract import InstanceChanges
from tashi.storage.memory import MemoryStore
from tests.clustermanager.fakenodes import Cluster, cluster
from tests.clustermanager.test_group_restarts import event, node
from tests.images.samples import sample_images

S = InstanceState
A = Action
HELD_ROWS = {row for row, target in INSTANCE_TRANSITIONS.items() if target is S.Held}


@dataclass(frozen=True)
class HeldPath:
    """One code path into Held: the row it performs, where it lives, and how to drive it (the
    driver returns the instance that must end up Held)."""

    name: str
    row: tuple[InstanceState, Action]
    module: str  # the cluster-manager module that performs it, under clustermanager/
    drive: Callable[[Cluster, Path], Instance]  # the cluster, its test directory


# --- setting the scene ----------------------------------------------------------------


def vm(c: Cluster, name: str = "vm", **request: object) -> Instance:
    disks = request.pop("disks", [DiskRequest("base.qcow2")])
    spec = VmRequest(name=name, disks=disks, **request)  # type: ignore[arg-type]
    return c.run(c.service.instances.create_vm(c.alice, spec))  # type: ignore[no-any-return]


def force(c: Cluster, inst: Instance, state: S, host: HostId | None = None, **hints: str) -> None:
    """Put ``inst`` in ``state`` (on ``host``) as if it had got there: the scene, not the act."""
    now = c.clock.now()
    current = c.instance(inst.id)
    changes = InstanceChanges(
        host_id=host,
        clear_host=host is None,
        clear_vm=host is None,
        hints={**current.hints, **hints} if hints else None,
    )
    c.run(
        c.service.db.write(
            lambda tx: tx.instances.transition(
                inst.id, current.state, state, now=now, changes=changes
            )
        )
    )


# --- the paths --------------------------------------------------------------------------


def refused_start(c: Cluster, tmp: Path) -> Instance:
    inst = vm(c)
    c.nodes.fail_start = {"vm"}
    with pytest.raises(TashiError):
        c.run(c.service.instances.activate_vm(c.agent, "vm", "h1"))
    return inst


def refused_restore(c: Cluster, tmp: Path) -> Instance:
    inst = vm(c)
    force(c, inst, S.Suspended)
    c.run(c.service.instances.resume_vm(c.alice, "vm"))
    return refused_start_of(c, inst)


def refused_start_of(c: Cluster, inst: Instance) -> Instance:
    c.nodes.fail_start = {inst.name}
    with pytest.raises(TashiError):
        c.run(c.service.instances.activate_vm(c.agent, inst.name, "h1"))
    return inst


def node_says_failed(state: S, detail: str) -> Callable[[Cluster, Path], Instance]:
    def drive(c: Cluster, tmp: Path) -> Instance:
        inst = vm(c)
        force(c, inst, state, c.hosts[0])
        event(c, inst, "failed", detail)
        return inst

    return drive


def report_without_it(state: S) -> Callable[[Cluster, Path], Instance]:
    def drive(c: Cluster, tmp: Path) -> Instance:
        inst = vm(c)
        force(c, inst, state, c.hosts[0])
        c.clock.advance(c.service.node_reports._rules.grace + 1)
        host = c.hosts[0]
        c.run(c.service.node_reports.heartbeat(node(c, host), host, Heartbeat(vms=())))
        return inst

    return drive


def past_its_deadline(state: S) -> Callable[[Cluster, Path], Instance]:
    def drive(c: Cluster, tmp: Path) -> Instance:
        inst = vm(c)
        force(c, inst, state, c.hosts[0])
        c.clock.advance(max(DEADLINES.values()) * 2)
        c.run(c.service.deadlines.check())
        return inst

    return drive


def failed_disk_copy(c: Cluster, tmp: Path) -> Instance:
    images = tmp / "vfs" / "images"  # make_settings' image store
    sample_images(images, {})
    inst = vm(c, disks=[DiskRequest("disk.qcow2", copy=True)])
    (images / "disk.qcow2").unlink()  # the template goes before the copy is made
    with pytest.raises(TashiError):
        c.run(c.service.instances.activate_vm(c.agent, "vm", "h1"))
    return inst


def scheduler_hold(c: Cluster, tmp: Path) -> Instance:
    inst = vm(c)
    c.run(c.service.instances.hold_vm(c.agent, "vm", "no host has 4096 MB free"))
    return inst


def torn_down_from(state: S) -> Callable[[Cluster, Path], Instance]:
    """A mate in ``state`` of a member whose start, shared with it, failed."""

    def drive(c: Cluster, tmp: Path) -> Instance:
        token = new_start()
        mate = vm(c, "mate", group_name="g")
        failed = vm(c, "failed", group_name="g")
        on_host = None if state is S.Pending else c.hosts[0]
        force(c, mate, state, on_host, **with_start({}, token))
        force(c, failed, S.Activating, c.hosts[1], **with_start({}, token))
        c.run(c.service.groups.teardown(c.instance(failed.id), "qemu exited during boot"))
        return mate

    return drive


PATHS = [
    HeldPath(
        "activateVm: the node refuses the start",
        (S.Activating, A.start_failed),
        "instances/service",
        refused_start,
    ),
    HeldPath(
        "activateVm: the node refuses the restore",
        (S.Resuming, A.start_failed),
        "instances/service",
        refused_restore,
    ),
    HeldPath(
        "the node reports a failed start",
        (S.Activating, A.start_failed),
        "hosts/nodereports",
        node_says_failed(S.Activating, ""),
    ),
    HeldPath(
        "the node reports a failed restore",
        (S.Resuming, A.start_failed),
        "hosts/nodereports",
        node_says_failed(S.Resuming, "restore failed: bad file"),
    ),
    HeldPath(
        "a report without the starting VM",
        (S.Activating, A.start_failed),
        "hosts/reconcile",
        report_without_it(S.Activating),
    ),
    HeldPath(
        "a report without the restoring VM",
        (S.Resuming, A.start_failed),
        "hosts/reconcile",
        report_without_it(S.Resuming),
    ),
    HeldPath(
        "a start past its deadline",
        (S.Activating, A.start_failed),
        "instances/deadlines",
        past_its_deadline(S.Activating),
    ),
    HeldPath(
        "a restore past its deadline",
        (S.Resuming, A.start_failed),
        "instances/deadlines",
        past_its_deadline(S.Resuming),
    ),
    HeldPath(
        "a disk copy past its deadline",
        (S.PreparingDisk, A.start_failed),
        "instances/deadlines",
        past_its_deadline(S.PreparingDisk),
    ),
    HeldPath(
        "a disk copy that fails",
        (S.PreparingDisk, A.start_failed),
        "images/diskcopy",
        failed_disk_copy,
    ),
    HeldPath(
        "holdVm (the scheduler)",
        (S.Pending, A.hold),
        "instances/service",
        scheduler_hold,
    ),
    *(
        HeldPath(
            f"a group torn down, mate {state.name}",
            (state, A.group_failed),
            "instances/groups",
            torn_down_from(state),
        )
        for state in (S.Pending, S.PreparingDisk, S.Activating, S.Resuming, S.Running)
    ),
]


def test_every_row_into_held_has_a_path() -> None:
    covered = {p.row for p in PATHS}
    missing = sorted((s.name, a.value) for s, a in HELD_ROWS - covered)
    assert not missing, f"add a HeldPath for each new way into Held: {missing}"
    assert covered <= HELD_ROWS


def test_every_module_that_holds_is_covered() -> None:
    """A module of the cluster manager that names an action leading to Held performs it
    somewhere: its paths must be here (``groups`` and ``instances`` check the table too)."""
    actions = {a.value for _, a in HELD_ROWS}
    pattern = re.compile(r"\b(?:Action|A)\.(" + "|".join(sorted(actions)) + r")\b")
    root = Path(tashi.__file__).parent / "clustermanager"
    naming = {
        p.relative_to(root).with_suffix("").as_posix()
        for p in root.rglob("*.py")
        if pattern.search(p.read_text(encoding="utf-8"))
    }
    assert naming == {p.module for p in PATHS}, "a new code path into Held: add its HeldPath"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_a_held_instance_says_why_in_its_history(tmp_path: Path, path: HeldPath) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=2, cores=4)
    inst = path.drive(c, tmp_path)
    held = c.instance(inst.id)
    assert held.state is S.Held, path.name
    assert held.reason and held.reason.strip(), f"{path.name}: Held without a reason"
    history = c.run(c.service.instances.history(c.alice, str(inst.id)))  # getInstanceHistory
    lines = [e.message for e in history]
    assert any(held.reason in line or "-> Held" in line for line in lines), (
        f"{path.name}: no history line says why it is Held ({held.reason!r}): {lines}"
    )
    assert held.host_id is None, f"{path.name}: a Held instance holds no host"


def test_a_failed_start_without_detail_still_reads(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=1)
    inst = node_says_failed(S.Activating, "")(c, tmp_path)
    assert c.instance(inst.id).reason == "its node reported that it failed, without saying why"


def test_the_history_names_host_and_cause_of_a_refused_start(tmp_path: Path) -> None:
    c = cluster(tmp_path, MemoryStore(), hosts=1)
    inst = refused_start(c, tmp_path)
    assert c.instance(inst.id).reason == "starting it on h1 failed: qemu of vm exited during boot"
    assert c.history(InstanceId(inst.id))[-1] == (
        "start_failed",
        "Activating -> Held: starting it on h1 failed: qemu of vm exited during boot",
    )
