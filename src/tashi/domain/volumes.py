"""Volumes and snapshots (EC2's EBS): a user's persistent disks, made and kept in the shared
image store, attached to their instances and copied into snapshots.

A volume is a qcow2 file of its own (``<prefix>/volumes/<id>.qcow2``, never an image of the
store: nobody lists, copies or launches it), owned by one user. Attached, it is one more
persistent disk of its instance (``DiskConfig`` with ``uri`` ``volume:<id>`` and the ``device``
it was attached as): the node manager takes the same exclusive image lock on it as on any
persistent disk, hot-plugs it into a running VM, and a VM started later (a start, a migration
target) opens it with the instance's other disks.

**One state column, one table.** ``VolumeState`` folds EC2's two (the volume's ``creating``,
``available``, ``in-use``, ``deleting``, ``error`` and the attachment's ``attaching``,
``attached``, ``detaching``) into one, so that every change is a compare-and-swap on one value
(``VolumeRepository.transition``) and ``VOLUME_TRANSITIONS`` lists every allowed move.
``ec2_state`` splits it back. A snapshot has EC2's ``pending``, ``completed`` and ``error``.

Ids are EC2's: ``vol-``/``snap-`` and 17 hexadecimal digits, random, the first never ``0``. An
id whose first digit is ``0`` is an instance's root volume (``root_volume_id``): the
persistent disk ``RunInstances`` gave it, shown as a volume but kept as the instance's disk
(``clustermanager/volumes``).

Devices are EC2's names for where a volume is attached: ``/dev/sd[b-z]``, ``/dev/xvd[b-z]`` or
``/dev/vd[b-z]``; the letter (``device_index``, 1 for ``b``) is what counts, so ``/dev/sdf`` and
``/dev/xvdf`` are one attachment point. The root disk is index 0 (``/dev/vda``).
"""

from __future__ import annotations

import enum
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from tashi.domain.errors import InsufficientResources, InvalidInput, InvalidState, NotFound
from tashi.domain.ids import InstanceId, UserId

VOLUME_PREFIX = "vol-"
SNAPSHOT_PREFIX = "snap-"
URI_PREFIX = "volume:"  # a volume as an instance's disk: never an image name (':' is not one)
ROOT_DEVICE = "/dev/vda"
ID_MAX = 32  # characters of a volume's or snapshot's id, as the store keeps them
ZONE_MAX = 64
TYPE_MAX = 16
DEVICE_MAX = 16
DESCRIPTION_MAX = 255  # characters, as AWS's
MIN_SIZE = 1  # GiB
MAX_SIZE = 16384  # GiB, EC2's largest gp3 volume
MAX_ATTACHED = 16  # volumes one instance may have attached besides its root disk
TYPES = ("standard", "gp2", "gp3", "io1", "io2", "st1", "sc1")  # shown as given, all alike here

_VOLUME_ID = re.compile(r"vol-[0-9a-f]{17}")
_SNAPSHOT_ID = re.compile(r"snap-[0-9a-f]{17}")
_DEVICE = re.compile(r"/dev/(?:sd|xvd|vd)([b-z])")


class VolumeState(enum.Enum):
    creating = "creating"  # its file is being made
    available = "available"
    attaching = "attaching"  # being added to an instance (hot-plugged into its VM)
    attached = "attached"
    detaching = "detaching"  # being taken out of an instance (its guest lets go)
    deleting = "deleting"  # its file is being removed; the record goes after
    error = "error"  # its file could not be made; it may only be deleted


class VolumeAction(enum.Enum):
    made = "made"
    failed = "failed"
    attach = "attach"
    attached = "attached"
    attach_failed = "attach_failed"
    detach = "detach"
    detached = "detached"
    detach_failed = "detach_failed"
    delete = "delete"


V, A = VolumeState, VolumeAction

VOLUME_TRANSITIONS: Mapping[tuple[VolumeState, VolumeAction], VolumeState] = {
    (V.creating, A.made): V.available,
    (V.creating, A.failed): V.error,
    (V.available, A.attach): V.attaching,
    (V.attaching, A.attached): V.attached,
    (V.attaching, A.attach_failed): V.available,
    (V.attached, A.detach): V.detaching,
    (V.detaching, A.detached): V.available,
    (V.detaching, A.detach_failed): V.attached,
    (V.available, A.delete): V.deleting,
    (V.error, A.delete): V.deleting,
}

#: The states in which a volume belongs to an instance (its ``instance_id`` is set).
ATTACHED: frozenset[VolumeState] = frozenset({V.attaching, V.attached, V.detaching})


def next_volume_state(state: VolumeState, action: VolumeAction) -> VolumeState:
    """Where ``action`` leads from ``state``; ``InvalidState`` if it is not allowed."""
    found = VOLUME_TRANSITIONS.get((state, action))
    if found is None:
        raise InvalidState(
            f"a volume that is {state.value} cannot {action.value.replace('_', ' ')}"
        )
    return found


def ec2_state(state: VolumeState) -> tuple[str, str | None]:
    """EC2's volume state and attachment state (``None``: no attachment) for ``state``."""
    if state in ATTACHED:
        return "in-use", state.value
    return state.value, None


@dataclass(frozen=True, slots=True)
class Attachment:
    """Where a volume is attached: the instance, the device it was given, since when, and
    whether it goes with its instance (EC2's DeleteOnTermination)."""

    instance_id: InstanceId
    device: str
    attached_at: datetime
    delete_on_termination: bool = False

    @property
    def index(self) -> int:
        return device_index(self.device)


@dataclass(frozen=True, slots=True)
class Volume:
    id: str
    user_id: UserId
    size: int  # GiB
    zone: str
    volume_type: str
    state: VolumeState
    created_at: datetime
    snapshot_id: str | None = None  # the snapshot it was made from
    attachment: Attachment | None = None  # set exactly in ``ATTACHED`` states

    @property
    def uri(self) -> str:
        return disk_uri(self.id)


class SnapshotState(enum.Enum):
    pending = "pending"
    completed = "completed"
    error = "error"


@dataclass(frozen=True, slots=True)
class Snapshot:
    id: str
    user_id: UserId
    volume_id: str  # what it copies (the volume may be gone since)
    volume_size: int  # GiB
    state: SnapshotState
    started_at: datetime
    description: str = ""


class UnknownVolume(NotFound):
    """A volume that does not exist, or not for the caller."""

    def __init__(self, volume_id: str) -> None:
        super().__init__(f"The volume '{volume_id}' does not exist.")
        self.volume_id = volume_id


class UnknownSnapshot(NotFound):
    """A snapshot that does not exist, or not for the caller."""

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(f"The snapshot '{snapshot_id}' does not exist.")
        self.snapshot_id = snapshot_id


class VolumeInUse(InvalidState):
    """The volume is attached to an instance (or on its way in or out)."""


class InstanceNotReady(InvalidState):
    """The instance is in no state to take or give back a volume (only running, paused or
    stopped instances do)."""


class DeviceInUse(InvalidInput):
    """Another volume is attached at that attachment point of the instance."""


class AttachmentLimit(InsufficientResources):
    """The instance has ``MAX_ATTACHED`` volumes already."""


def _new(prefix: str) -> str:
    return prefix + "123456789abcdef"[secrets.randbelow(15)] + secrets.token_hex(8)


def new_volume_id() -> str:
    return _new(VOLUME_PREFIX)


def new_snapshot_id() -> str:
    return _new(SNAPSHOT_PREFIX)


def is_volume_id(text: str) -> bool:
    return _VOLUME_ID.fullmatch(text) is not None


def is_snapshot_id(text: str) -> bool:
    return _SNAPSHOT_ID.fullmatch(text) is not None


def root_volume_id(instance_id: int) -> str:
    """The id an instance's root disk is shown under: its instance id's 17 digits."""
    return f"{VOLUME_PREFIX}{instance_id:017x}"


def root_instance(volume_id: str) -> InstanceId | None:
    """The instance whose root disk ``volume_id`` names, or ``None`` for a volume's id."""
    if not is_volume_id(volume_id) or volume_id[len(VOLUME_PREFIX)] != "0":
        return None
    return InstanceId(int(volume_id[len(VOLUME_PREFIX) :], 16))


def disk_uri(volume_id: str) -> str:
    """A volume as an instance's disk (``DiskConfig.uri``)."""
    return URI_PREFIX + volume_id


def volume_of(uri: str) -> str | None:
    """The volume a disk's ``uri`` names, or ``None`` for an image of the store."""
    if not uri.startswith(URI_PREFIX):
        return None
    volume_id = uri[len(URI_PREFIX) :]
    if not is_volume_id(volume_id):
        raise InvalidInput(f"{uri!r} names no volume")
    return volume_id


def device_index(device: str) -> int:
    """The attachment point of an EC2 device name: 1 for ``/dev/sdb``, ``/dev/xvdb`` or
    ``/dev/vdb``, up to 25 for ``z``; ``InvalidInput`` for any other name."""
    found = _DEVICE.fullmatch(device)
    if found is None:
        raise InvalidInput(
            f"Invalid value '{device}' for unixDevice. Attachment point {device} is not valid:"
            " use /dev/sd[b-z], /dev/xvd[b-z] or /dev/vd[b-z]"
        )
    return ord(found.group(1)) - ord("a")


def free_index(taken: Iterable[int], device: str) -> int:
    """The attachment point of ``device`` if no other volume of the instance is there
    (``DeviceInUse``)."""
    wanted = device_index(device)
    if wanted in set(taken):
        raise DeviceInUse(
            f"Invalid value '{device}' for unixDevice. Attachment point {device} is already in use"
        )
    return wanted


def size_gib(size_bytes: int) -> int:
    """Bytes as whole GiB, rounded up (at least 1), as EC2 shows sizes."""
    return max(1, -(-size_bytes // 2**30))


def size(value: int) -> int:
    """``value`` GiB if a volume may have that size (``InvalidInput``)."""
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise InvalidInput(f"a volume's size must be {MIN_SIZE} to {MAX_SIZE} GiB, not {value}")
    return value


def volume_type(text: str | None) -> str:
    chosen = text or "gp2"
    if chosen not in TYPES:
        raise InvalidInput(f"Value ({chosen}) for parameter volumeType is invalid")
    return chosen


def description(text: str | None) -> str:
    chosen = text or ""
    if len(chosen) > DESCRIPTION_MAX:
        raise InvalidInput(f"a description has at most {DESCRIPTION_MAX} characters")
    return chosen
