"""The contracts ``NodeService`` (``service.py``) is built with, beside the VMM and network
drivers: the disks' preparer and the disks it prepares (``disks.py``), the sink of the events it
reports (``outbox.py``), and the two services told of each VM's taps, the guests' instance
metadata (``metadata/``) and their security groups (``secgroups/``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tashi.domain.firewall import Policy
from tashi.domain.ids import InstanceId
from tashi.domain.models import DiskConfig, Instance
from tashi.domain.nodes import NodeEvent
from tashi.network.base import Attachment
from tashi.vmm.base import BootSpec, DiskSpec


class Prepared(Protocol):
    """The disks of one VM, ready for the hypervisor."""

    @property
    def disks(self) -> Sequence[DiskSpec]: ...

    @property
    def boot(self) -> BootSpec: ...

    def release(self) -> None:
        """Delete overlays and drop persistent-image locks. Idempotent."""

    def settle(self) -> list[str]:
        """A migration target's: take the locks its source held (the VM has arrived)."""

    def plug(self, disk: DiskConfig) -> DiskSpec:
        """Take one more persistent disk (a volume) for the running VM: locked, inspected."""

    def unplug(self, path: Path) -> None:
        """Give the persistent disk ``path`` back (its lock). Idempotent."""


class DiskPreparer(Protocol):
    def prepare(
        self, instance_id: InstanceId, disks: Sequence[DiskConfig], *, incoming: bool = False
    ) -> Prepared: ...

    def blank_like(self, source: Path, target: Path) -> None:
        """An empty qcow2 ``target`` of the size of ``source`` (a running VM's disk)."""

    def adopt(self, instance_id: InstanceId, disks: Sequence[DiskConfig]) -> Prepared:
        """Take over the disks of a VM that kept running across a node-manager restart."""

    def discard(self, instance_id: InstanceId) -> None:
        """Delete what is left of the disks of a VM that ended while no one watched."""


class EventSink(Protocol):
    def put(self, event: NodeEvent) -> None: ...


class TapFirewall(Protocol):
    """The security groups of the VMs (``nodemanager.secgroups.FirewallService``)."""

    async def attach(self, instance: Instance, taps: Sequence[Attachment]) -> None:
        """Guard ``instance``'s ``taps`` if it is in groups (before its guest runs; a NIC
        hot-plugged later: all its taps again, of which only the new one is added);
        ``BackendFailure`` if they cannot be: the VM must not start unguarded."""

    async def detach(self, instance_id: InstanceId) -> None:
        """Stop guarding the instance (its VM has gone). Never raises."""

    async def restore(self, vms: Sequence[tuple[Instance, Sequence[Attachment]]]) -> None:
        """After a restart: guard exactly these VMs on these taps."""

    async def update(self, policy: Policy) -> str:
        """Enforce the cluster manager's ``policy`` from now on; the version enforced."""

    @property
    def version(self) -> str:
        """The version of the policy enforced now."""


class GuestMetadata(Protocol):
    """The instance metadata the guests read (``nodemanager.metadata.MetadataService``)."""

    async def attach(self, instance: Instance, taps: Sequence[Attachment]) -> None:
        """Serve ``instance`` on its ``taps`` (which exist; the guest does not run yet)."""

    async def detach(self, instance_id: InstanceId) -> None:
        """Stop serving the instance (its VM has gone). Never raises."""

    async def restore(self, vms: Sequence[tuple[Instance, Sequence[Attachment]]]) -> None:
        """After a restart: serve exactly these VMs on these taps."""

    def seed(self, instance: Instance, directory: Path) -> DiskSpec | None:
        """The instance's NoCloud seed disk, made in its VM ``directory``, if it wants one."""
