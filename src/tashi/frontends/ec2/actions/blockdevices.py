"""RunInstances' ``BlockDeviceMappings``: the root volume's size, and more volumes for each
instance, made with it and attached to it before anything can start it.

* The root device (``/dev/vda``, also named ``/dev/sda1`` or ``/dev/xvda`` as AMIs do): its
  ``Ebs.VolumeSize`` grows the instance's own root disk (never below the image's size:
  ``InvalidBlockDeviceMapping``); its ``DeleteOnTermination`` must stay true (the root disk goes
  with its instance).
* Any other device (``/dev/sd[b-z]``, ``/dev/xvd[b-z]``, ``/dev/vd[b-z]``) with ``Ebs``: a new
  volume per instance (``VolumeSize`` GiB, or from ``SnapshotId``; ``VolumeType``), made and
  ``available`` before the instances are recorded, then attached to its instance in the unit
  that records it (``VolumeService.attach_new``), with ``DeleteOnTermination`` (AWS's default
  for such volumes: true). If the launch fails, the volumes made for it are deleted.
* ``NoDevice`` and instance-store devices (``VirtualName``) are refused: there are none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tashi.clustermanager.instances.service import Also
from tashi.clustermanager.volumes.attachments import Planned
from tashi.clustermanager.volumes.service import NewVolume, VolumeService
from tashi.domain import volumes as rules
from tashi.domain.models import Image, Principal
from tashi.frontends.ec2.actions.volumes import check_snapshot, volume_errors
from tashi.frontends.ec2.context import Ec2Context, Params
from tashi.frontends.ec2.errors import Ec2Error

ROOT_NAMES = ("/dev/vda", "/dev/sda1", "/dev/sda", "/dev/xvda")


@dataclass(frozen=True, slots=True)
class Extra:
    device: str
    asked: NewVolume
    delete_on_termination: bool


@dataclass
class LaunchVolumes:
    """What the launch's block devices ask for, and the volumes made for its instances."""

    root_size: int | None = None
    extras: list[Extra] = field(default_factory=list)
    made: list[list[Planned]] = field(default_factory=list)  # per instance, in launch order

    def hook(self, volumes: VolumeService) -> Also:
        """What attaches each new instance's volumes, in the unit that records it."""
        return volumes.attaching(self.made)


def _bad(message: str) -> Ec2Error:
    return Ec2Error("InvalidBlockDeviceMapping", message)


def parse(ctx: Ec2Context, params: Params, zone: str) -> LaunchVolumes:
    """Every refusal, before anything is made."""
    out = LaunchVolumes()
    seen: set[int] = set()
    for mapping in params.get("BlockDeviceMappings") or []:
        device = mapping.get("DeviceName")
        if not device:
            raise Ec2Error("MissingParameter", "The request must contain the parameter DeviceName")
        if mapping.get("NoDevice") is not None or mapping.get("VirtualName"):
            raise _bad(f"{device}: Tashi has no instance store and no device to suppress")
        ebs = mapping.get("Ebs") or {}
        if not ebs:
            raise _bad(f"{device}: give Ebs (VolumeSize or SnapshotId)")
        if ebs.get("Encrypted"):
            raise _bad(f"{device}: Tashi's volumes are not encrypted")
        if device in ROOT_NAMES:
            if out.root_size is not None or 0 in seen:
                raise _bad("the root device is named twice")
            seen.add(0)
            _root(ebs, out)
            continue
        with volume_errors():
            index = rules.device_index(device)
        if index in seen:
            raise _bad(f"{device} is named twice (/dev/sdX, /dev/xvdX and /dev/vdX are one place)")
        seen.add(index)
        out.extras.append(_extra(device, ebs, zone))
    if len(out.extras) > rules.MAX_ATTACHED:
        raise Ec2Error("AttachmentLimitExceeded", f"at most {rules.MAX_ATTACHED} volumes a VM")
    return out


def _root(ebs: dict[str, Any], out: LaunchVolumes) -> None:
    if ebs.get("SnapshotId"):
        raise _bad("the root volume is the image's: it cannot come from a snapshot")
    if ebs.get("DeleteOnTermination") is False:
        raise _bad("the root volume is deleted with its instance in Tashi: DeleteOnTermination")
    size = ebs.get("VolumeSize")
    if size is not None:
        with volume_errors():
            out.root_size = rules.size(int(size))


def _extra(device: str, ebs: dict[str, Any], zone: str) -> Extra:
    snapshot = ebs.get("SnapshotId")
    if snapshot:
        check_snapshot(snapshot)
    size = ebs.get("VolumeSize")
    if size is None and not snapshot:
        raise _bad(f"{device}: give VolumeSize or SnapshotId")
    asked = NewVolume(size, zone, ebs.get("VolumeType") or "gp2", snapshot or None)
    delete = ebs.get("DeleteOnTermination")
    return Extra(device, asked, True if delete is None else bool(delete))


async def prepare(
    ctx: Ec2Context, caller: Principal, plan: LaunchVolumes, image: Image, roots: Sequence[str]
) -> None:
    """Grow the root disks, and make each instance's volumes (``discard`` undoes it)."""
    if plan.root_size is not None:
        least = rules.size_gib(image.virtual_size or image.size)
        if plan.root_size < least:
            raise _bad(f"Volume of size {plan.root_size}GiB is smaller than the image ({least}GiB)")
        for root in roots:
            with volume_errors():
                await ctx.service.volumes.grow_root(root, plan.root_size)
    for _ in roots:
        with volume_errors():
            made = await ctx.service.volumes.make_for_launch(caller, [e.asked for e in plan.extras])
        plan.made.append(
            [
                Planned(volume, e.device, e.delete_on_termination)
                for volume, e in zip(made, plan.extras, strict=True)
            ]
        )


async def discard(ctx: Ec2Context, plan: LaunchVolumes) -> None:
    """The volumes made for a launch that failed (what cannot be removed is logged)."""
    await ctx.service.volumes.discard([p.volume for made in plan.made for p in made])
