"""Real QEMU (TCG), real daemons: ``tashi createVm`` ends as a running guest with no manual step —
tashi-scheduler places it, the node manager boots it, the console shows the guest's UP marker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import qemu_nodes
from tests.e2e.harness import Cluster, wait_for
from tests.scheduler import live

BOOT_TIMEOUT = 90.0


@pytest.fixture
def qemu_cluster(tmp_path: Path, tiny_image: Path) -> Iterator[tuple[Cluster, str]]:
    with qemu_nodes(
        tmp_path, tiny_image, agent=True, expireHostTime=5.0, reconcileGrace=2.0
    ) as cluster:
        yield cluster


def test_createvm_runs_a_real_guest_with_no_manual_step(
    qemu_cluster: tuple[Cluster, str],
) -> None:
    c, image = qemu_cluster
    with live.scheduler(c):
        done = c.tashi("createVm", "--name", "auto", "--memory", "128", "--disks", image)
        assert done.returncode == 0, done.stderr
        wait_for(
            "auto to be Running",
            lambda: c.admin.get_instance("auto").state == "Running",
            timeout=BOOT_TIMEOUT,
            every=0.5,
        )
        wait_for(
            "the guest's UP marker",
            lambda: "TASHI-GUEST-UP" in c.admin.vmm_specific_call("auto", "console").message,
            timeout=BOOT_TIMEOUT,
            every=0.5,
        )
        inst = c.admin.get_instance("auto")
        assert inst.hostId in {h.id for h in c.admin.get_hosts()}
