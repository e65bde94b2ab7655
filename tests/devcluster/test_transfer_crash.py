"""A node manager SIGKILLed while its host sends a VM away (a live migration, a suspend) and
started again at once: the fault-injection suite's finding of issue 14.6, now a regression test.

QEMU goes on with the transfer without its node manager. The QEMU driver recorded the transfer
in the VM's state file, so the restarted node manager adopts the VM as sending and ends it as
the dead one would have (``VmmDriver.finish_outgoing``): a finished suspend file is sealed and
reported ``suspended`` (the event kept on disk until the cluster manager has it), a finished
migration lets the source's copy go. The cluster manager, whose ``migrate`` call was never
answered, does not roll back (that destroyed the target, which had the only copy): it asks
both hosts (``Migrations.settle``) and runs the VM on the target.

The migration case stops the node manager (SIGSTOP) while QEMU sends and kills it once the
stream has ended; killed earlier, the transfer may fail with the target's copy, and QEMU runs
the source on, which is right too. A restart that takes longer than the host's lease (6 s
here) lets the watchdog stop the host's VMs: HA then restarts a suspending VM elsewhere, from
its image, which the test accepts as one correct place.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tashi.api.schemas import DiskIn, InstanceIn, NicIn
from tashi.devcluster import processes, reach
from tashi.devcluster.configs import NM_PORT
from tashi.devcluster.harness import Running, ha_options, running_cluster

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="tashi-cluster needs root")

FABRIC = "198.18.176.0/20"  # no other module's (bench outage: 160)
IMAGE = "tashi-tiny.qcow2"
SETTLE = 45.0  # seconds the cluster gets to resolve the transfer after the restart


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> Iterator[Running]:
    options = ha_options(FABRIC, tiny_image, hostMemory=512)
    with running_cluster(tmp_path_factory.mktemp("transfercrash"), 2, options) as running:
        yield running


def sending(netns: str, source: str) -> bool:
    """Whether ``source`` has a TCP connection established in ``netns`` that is not to or from
    a node manager's port (the witnesses' lease renewals): a migration stream."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-Htn", "state", "established"],
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        *_, local, peer = line.split()
        node_api = local.endswith(f":{NM_PORT}") or peer.endswith(f":{NM_PORT}")
        if peer.startswith(f"{source}:") and not node_api:  # not a witness's lease renewal
            return True
    return False


def answering(c: Running, name: str) -> bool:
    inst = c.admin.get_instance(name)
    return inst.state == "Running" and not reach.silent(c.plan.cm_ns, [inst])


@pytest.mark.parametrize("transfer", ["migrate", "suspend"])
def test_a_node_manager_killed_mid_transfer_leaves_no_frozen_vm(
    cluster: Running, transfer: str
) -> None:
    c = cluster
    name = f"mid-{transfer}"
    c.admin.create_vm(
        InstanceIn(name=name, memory=128, disks=[DiskIn(uri=IMAGE)], nics=[NicIn(network=1)])
    )
    try:
        processes.wait_for(f"{name} answering", lambda: answering(c, name), 120.0, every=0.5)
        inst = c.admin.get_instance(name)
        source = c.admin.get_host(inst.hostId)  # type: ignore[arg-type]
        n = int(source.name.removeprefix("host"))
        if transfer == "migrate":
            other = next(h for h in c.admin.get_hosts() if h.id != source.id)
            c.admin.migrate_vm(name, other.id)
            target_ns = c.plan.host_ns(int(other.name.removeprefix("host")))
            under_way = lambda: sending(target_ns, c.plan.host_address(n))  # noqa: E731
        else:
            c.admin.suspend_vm(name)
            partial = c.layout.vfs / "suspend" / f"{inst.id}_{name}.gz.partial"
            under_way = lambda: partial.exists() and partial.stat().st_size > 0  # noqa: E731
        processes.wait_for(f"the {transfer} under way in QEMU", under_way, 30.0, every=0.005)
        nm = c.state.hosts[n].pid
        if transfer == "migrate":
            # The node manager hangs, then dies: QEMU sends the VM all the same, and nobody
            # answers the cluster manager's call that asked for it.
            os.kill(nm, signal.SIGSTOP)
            processes.wait_for("the stream's end", lambda: not under_way(), 30.0, every=0.01)
        os.kill(nm, signal.SIGKILL)
        assert c.cli("rm", f"nm:{n}").returncode == 0
        assert c.cli("add", f"nm:{n}").returncode == 0
        done = (
            (lambda: answering(c, name))
            if transfer == "migrate"
            else (lambda: c.admin.get_instance(name).state == "Suspended" or answering(c, name))
        )
        processes.wait_for(f"the {transfer} resolved", done, SETTLE, every=1.0)
    finally:
        c.admin.destroy_vm(name)
