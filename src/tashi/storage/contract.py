"""The store contract: a unit of work over seventeen repositories.

Usage::

    with store.transaction() as tx:          # one database transaction
        inst = tx.instances.get(InstanceId(4))
        tx.instances.transition(inst.id, inst.state, InstanceState.Destroying, now=now)

Everything done inside one ``transaction()`` commits together or not at all: an exception
leaving the block rolls it back and propagates (after a store error too: the whole unit is
undone, never half of it). ``transaction(write=False)`` is for pure reads and must not write
(SQLite then does not take its write lock, and a long read holds up no writer).

Rules every implementation keeps (the contract tests check each):

* Ids come from the store and are never reused, not even after the highest one is removed or
  the store is reopened. Network ids are the exception: the administrator chooses them.
* State changes are compare-and-swap: ``transition`` and ``remove`` name the state they expect
  and raise ``StateConflict`` when the stored state differs (``NotFound`` when the row is gone).
  Nothing is ever overwritten on the strength of an earlier read.
* Uniqueness is enforced by the store, race-free: user, host and network names; instance names
  when ``unique_name`` is asked for; NIC MAC addresses; NIC IP addresses within a network.
  A violation raises ``AlreadyExists`` and the transaction is rolled back.
* Removing a user who owns instances, or a network a NIC is on, raises ``InvalidState``.
* An instance's allocated addresses (``addresses``) are released by the same unit that removes
  the instance: an address is never held by an instance that no longer exists.
* Foreign failures (driver errors, lost connections, a deadlock or lock timeout) surface as
  ``BackendFailure``; the unit was rolled back and the caller may run it again.
* Timestamps given to the store must be timezone-aware (``InvalidInput`` otherwise). They come
  back aware, equal to what was stored to the microsecond (the SQL store returns them in UTC).
* Returned records are frozen snapshots; lists come back ordered by id.
* Text the store bounds is checked before it is written, the same way everywhere
  (``InvalidInput``, see ``shared.bounded``), against the limits below, which ``sql/tables.py``
  uses as its column sizes.

What every implementation runs alike to keep these rules (the bounds checked before a write,
the record a new instance is, the lowest free address...) is ``shared.py``'s.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tashi.domain.ids import HostId, InstanceId, NetworkId, UserId
from tashi.domain.keypairs import KeyPair
from tashi.domain.models import (
    AccessKey,
    DiskConfig,
    Host,
    Instance,
    InstanceEvent,
    InstanceSpec,
    Network,
    NicConfig,
    NodeLink,
    Principal,
    Role,
    Usage,
    User,
)
from tashi.domain.nodes import Renewal
from tashi.domain.states import HostState, InstanceState
from tashi.domain.volumes import Snapshot, SnapshotState, Volume, VolumeState
from tashi.domain.witnesses import WitnessSets
from tashi.storage.secgroups import SecurityGroupRepository

ENDPOINT_MAX = 255  # characters of a node link's endpoint
SECRET_MAX = 255  # characters of a node link's secret
EVENT_KIND_MAX = 32  # characters of an event's kind
ACCESS_KEY_MAX = 32  # characters of an access key's id
SEALED_SECRET_MAX = 255  # characters of an access key's sealed secret
KEY_PAIR_ID_MAX = 32  # characters of a key pair's id
EVENT_MESSAGE_MAX = 4000  # characters of an event's message kept (fits MariaDB's TEXT)


@dataclass(frozen=True, slots=True)
class InstanceFilter:
    """Which instances ``find`` returns; every given field must match (all ``None``: all)."""

    ids: Sequence[InstanceId] | None = None
    name: str | None = None
    name_prefix: str | None = None
    user_id: UserId | None = None
    states: Sequence[InstanceState] | None = None
    host_id: HostId | None = None
    group_name: str | None = None  # members of a group (with user_id: that user's group)
    after_id: InstanceId | None = None  # keyset paging: only ids greater than this
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class InstanceChanges:
    """Fields a transition may change besides the state. ``None`` leaves a field alone;
    to clear ``host_id``/``vm_id``/``reason`` set the matching ``clear_*`` flag."""

    host_id: HostId | None = None
    vm_id: int | None = None
    reason: str | None = None
    hints: dict[str, str] | None = None  # replaces all hints
    cpu_share: int | None = None
    cores: int | None = None  # a stopped instance's new size (EC2's instanceType)
    memory: int | None = None
    nics: tuple[NicConfig, ...] | None = None  # replaces IPs of NICs matched by MAC
    disks: tuple[DiskConfig, ...] | None = None  # replaces all disks
    clear_host: bool = False
    clear_vm: bool = False
    clear_reason: bool = False


class InstanceRepository(Protocol):
    def add(
        self, owner: UserId, spec: InstanceSpec, *, unique_name: bool, now: datetime
    ) -> Instance:
        """Insert a Pending instance owned by ``owner`` and return it with its new id.

        ``unique_name``: refuse (``AlreadyExists``) a name another instance holds; an instance
        added without it does not reserve its name. MACs must be unused (``AlreadyExists``)."""

    def adopt(self, instance: Instance, *, unique_name: bool, now: datetime) -> Instance:
        """Insert an instance a node manager runs but this store never had, keeping its id
        (reconciliation's adoption; the id came from this cluster's database, which lost it).
        Later ids stay above it. ``AlreadyExists`` if the id, name or a MAC is taken."""

    def get(self, instance_id: InstanceId) -> Instance:
        """The instance, or ``NotFound``."""

    def find(self, where: InstanceFilter = InstanceFilter()) -> list[Instance]:
        """Matching instances ordered by id, each with all its NICs (in their order).
        Indexed by state, owner, host, name and name prefix; one page costs two queries."""

    def count(self, where: InstanceFilter = InstanceFilter()) -> int:
        """How many instances match ``where`` (its ``limit`` is ignored)."""

    def macs_in_use(self, macs: Sequence[str]) -> set[str]:
        """Which of ``macs`` some NIC already has."""

    def transition(
        self,
        instance_id: InstanceId,
        expected: InstanceState,
        new: InstanceState,
        *,
        now: datetime,
        changes: InstanceChanges | None = None,
    ) -> Instance:
        """Compare-and-swap the state from ``expected`` to ``new`` (``StateConflict``/``NotFound``)
        and apply ``changes``. ``state_since`` becomes ``now`` when the state changes."""

    def add_nic(
        self, instance_id: InstanceId, expected: InstanceState, nic: NicConfig, *, now: datetime
    ) -> Instance:
        """Append ``nic`` if the instance is still in ``expected`` (a compare-and-swap of its
        state onto itself); ``AlreadyExists`` for a MAC or address in use, ``NotFound``."""

    def remove_nic(
        self, instance_id: InstanceId, expected: InstanceState, mac: str, *, now: datetime
    ) -> Instance:
        """Remove the instance's last NIC, ``mac``, and the address allocated to it, if the
        instance is still in ``expected`` (``StateConflict``/``NotFound``). ``InvalidInput``
        for a NIC that is not the last; an instance without NIC ``mac`` is returned as it is."""

    def remove(self, instance_id: InstanceId, expected: InstanceState) -> None:
        """Delete the instance if it is still in ``expected`` (``StateConflict``/``NotFound``)."""

    def usage_by_host(
        self, states: Sequence[InstanceState], host_ids: Collection[HostId] | None = None
    ) -> dict[HostId, Usage]:
        """For each host (of ``host_ids`` when given: a page of hosts), how many instances in
        ``states`` it has and their memory and cores, summed by the store in one grouped query
        (what getSlots and the scheduler's snapshot subtract from a host's capacity). Instances
        without a host, and hosts with no such instance, are left out; keys come in host id
        order."""

    def usage_on_host(self, host_id: HostId, states: Sequence[InstanceState]) -> Usage:
        """``usage_by_host`` for one host: how many of its instances are in ``states`` and
        their memory and cores, summed by the store in one query without reading the
        instances (activateVm's claim, under the host's lock). ``Usage()`` when it has none."""


class HostRepository(Protocol):
    def add(self, name: str, *, memory: int, cores: int, version: str, now: datetime) -> Host:
        """Register a new host (Normal, down) with a fresh id; ``AlreadyExists`` on its name."""

    def get(self, host_id: HostId) -> Host: ...

    def get_by_name(self, name: str) -> Host: ...

    def lock(self, host_id: HostId) -> Host:
        """The host as it is now, its row locked until the transaction ends (``NotFound`` if
        unknown). Write units that lock the same host run one after the other, so a check of
        the host's free capacity followed by a placement on it cannot interleave with another
        (activateVm's claim). PostgreSQL and MariaDB take a row lock (``SELECT … FOR
        UPDATE``); SQLite's write transactions, and the memory fake's, are serialised anyway."""

    def up_ids(self) -> list[HostId]:
        """The ids of the up hosts, in order (no host read whole)."""

    def silent(self, before: datetime) -> list[Host]:
        """The up hosts last heard before ``before`` (or never), in id order."""

    def lapsed(self, before: datetime) -> list[Host]:
        """The down hosts whose lease ended at or before ``before``, in id order."""

    def list(
        self,
        *,
        ids: Collection[HostId] | None = None,
        after_id: HostId | None = None,
        limit: int | None = None,
    ) -> list[Host]:
        """The hosts in id order: those of ``ids`` when given, only ids greater than
        ``after_id`` (keyset paging, as ``InstanceFilter``), at most ``limit`` of them
        (``limit`` >= 0, else ``InvalidInput``). No argument: every host."""

    def set_state(self, host_id: HostId, expected: HostState, new: HostState) -> Host:
        """Compare-and-swap of the administrative state."""

    def update(
        self,
        host_id: HostId,
        *,
        notes: str | None = None,
        config: dict[str, str] | None = None,
        up: bool | None = None,
        decayed: bool | None = None,
        memory: int | None = None,
        cores: int | None = None,
        cpu_speed: int | None = None,
        version: str | None = None,
        load: float | None = None,
        last_heartbeat: datetime | None = None,
        lease_expires: datetime | None = None,
    ) -> Host:
        """Set the given fields only (each is owned by one writer: the admin or the node).
        ``None`` leaves a field as it is, so a lease is never cleared, only let expire."""

    def renew(self, renewals: Sequence[Renewal]) -> set[HostId]:
        """Record many hosts' liveness in one go (each renewal's time, load and lease; the
        decay cleared; a lease is never cleared). The ids among them stored down or unknown,
        whose node must report the whole way next time."""

    def add_reservation(self, host_id: HostId, user_id: UserId) -> Host:
        """Reserve the host for ``user_id`` too (idempotent)."""

    def remove_reservation(self, host_id: HostId, user_id: UserId) -> Host:
        """Idempotent."""

    def remove(self, host_id: HostId) -> None:
        """Forget the host and its link (``NotFound`` if unknown). Instances keep their
        ``host_id``."""

    def set_link(
        self,
        host_id: HostId,
        *,
        endpoint: str,
        secret: str,
        user_id: UserId,
        now: datetime,
        peer_secret: str | None = None,
    ) -> NodeLink:
        """Record how to reach the host's node manager, replacing the link it had (a node
        manager registers again each time it starts), in one race-free statement. The link's
        witness sets are kept: a node manager that restarts goes on using its set.

        ``user_id`` is the node's own account; removing the host or that user drops the link.
        ``secret`` is stored as given, because the cluster manager must present it: like a
        password hash it never leaves the cluster manager. ``NotFound`` for an unknown host or
        user; ``InvalidInput`` for an empty endpoint or secret, or one longer than
        ``ENDPOINT_MAX``/``SECRET_MAX``."""

    def set_witnesses(self, host_id: HostId, witnesses: WitnessSets) -> None:
        """Replace the witness sets of the host's link (ADR 0010); ``NotFound`` if it has
        no link."""

    def link(self, host_id: HostId) -> NodeLink | None:
        """The host's link, or ``None`` if it has none (or the host is unknown)."""

    def links(self) -> dict[HostId, NodeLink]:
        """Every link, keyed by host id in id order."""


class NetworkRepository(Protocol):
    def add(self, network_id: NetworkId, name: str) -> Network:
        """``AlreadyExists`` if the id or the name is taken."""

    def get(self, network_id: NetworkId) -> Network: ...

    def list(self, *, after_id: NetworkId | None = None, limit: int | None = None) -> list[Network]:
        """The networks in id order: only ids greater than ``after_id`` (keyset paging, as
        ``InstanceFilter``), at most ``limit`` of them (>= 0, else ``InvalidInput``). No
        argument: all of them."""

    def remove(self, network_id: NetworkId) -> None:
        """``InvalidState`` while a NIC is on it; ``NotFound`` if unknown."""


class UserRepository(Protocol):
    def add(
        self, name: str, *, role: Role, priority: int, password_hash: str, now: datetime
    ) -> User:
        """``AlreadyExists`` if the name is taken."""

    def get(self, user_id: UserId) -> User: ...

    def get_by_name(self, name: str) -> User: ...

    def list(self, *, after_id: UserId | None = None, limit: int | None = None) -> list[User]:
        """The users in id order: only ids greater than ``after_id`` (keyset paging, as
        ``InstanceFilter``), at most ``limit`` of them (>= 0, else ``InvalidInput``). No
        argument: all of them."""

    def password_hash(self, user_id: UserId) -> str:
        """The stored hash (never leaves the cluster manager)."""

    def set_password_hash(self, user_id: UserId, password_hash: str) -> None: ...

    def remove(self, user_id: UserId) -> None:
        """``InvalidState`` while the user owns instances; also drops their tokens, host
        reservations and node links."""


class TokenRepository(Protocol):
    def add(self, token_hash: str, user_id: UserId, *, expires: datetime) -> None:
        """``NotFound`` for an unknown user; ``AlreadyExists`` if the hash is stored already."""

    def principal(self, token_hash: str, *, now: datetime) -> Principal | None:
        """Who holds this token if it expires after ``now``, or ``None``."""

    def remove(self, token_hash: str) -> None: ...

    def purge_expired(self, now: datetime) -> int:
        """Delete expired tokens; return how many."""


class AccessKeyRepository(Protocol):
    """Users' EC2 access keys; a key goes with its user."""

    def add(self, key: AccessKey, sealed_secret: str) -> None:
        """Raises ``NotFound`` for an unknown user, ``AlreadyExists`` for a key id in use."""

    def get(self, key_id: str) -> tuple[AccessKey, str, Principal] | None:
        """The key, its sealed secret and its user as a principal; ``None`` if unknown."""

    def list(
        self,
        user_id: UserId | None = None,
        *,
        after_key: str | None = None,
        limit: int | None = None,
    ) -> list[AccessKey]:
        """The keys (of ``user_id`` when given), oldest first (by creation, then id). Keyset
        paging: only the keys that come after the key ``after_key`` in that order
        (``InvalidInput`` if no such key exists, e.g. deleted meanwhile), at most ``limit``
        of them (>= 0, else ``InvalidInput``)."""

    def remove(self, key_id: str) -> None:
        """Raises ``NotFound`` for an unknown key."""


class KeyPairRepository(Protocol):
    """Users' SSH key pairs (``domain/keypairs.py``); a key pair goes with its user."""

    def add(self, pair: KeyPair) -> None:
        """``NotFound`` for an unknown user; ``AlreadyExists`` for a name the user has given
        another key pair already, or an id in use; ``InvalidInput`` for a public key or name
        longer than ``keypairs.PUBLIC_KEY_MAX``/``NAME_MAX``."""

    def get(self, key_id: str) -> KeyPair | None:
        """The key pair, or ``None``."""

    def named(self, user_id: UserId, name: str) -> KeyPair | None:
        """The user's key pair of that name (names compare exactly), or ``None``."""

    def list(self, user_id: UserId | None = None) -> list[KeyPair]:
        """The key pairs (of ``user_id`` when given), by user then name."""

    def remove(self, key_id: str) -> None:
        """Delete the key pair and its tags; ``NotFound`` if unknown."""


class TagRepository(Protocol):
    """The tags of one kind of resource by the resource's reference (``domain/tags.py``):
    ``tx.key_pair_tags`` by key pair id (they go with their key pair), ``tx.image_tags`` by
    image name (images are files, not rows: the caller says which exist)."""

    def of(self, refs: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
        """Each resource's tags (of ``refs`` when given), resources and keys in order; a
        resource without tags is left out."""

    def put(self, ref: str, tags: Mapping[str, str]) -> None:
        """Add these tags to the resource, changing the value of a key it has (the others
        stay). ``NotFound`` for a key pair that does not exist; ``InvalidInput`` for a key
        (value) longer than ``tags.KEY_MAX`` (``VALUE_MAX``) or an empty key."""

    def delete(self, ref: str, keys: Iterable[str] | None = None) -> int:
        """Remove these keys of the resource's (``None``: all); return how many were."""


class VolumeRepository(Protocol):
    """Users' volumes (``domain/volumes.py``); the files are the volume service's.

    A volume's state changes by compare-and-swap only (``transition``, ``remove``). At most one
    volume is attached at an attachment point of an instance (``Attachment.index``), race-free:
    a second one is ``AlreadyExists``. A user who has volumes (or snapshots) cannot be removed
    (``InvalidState``, as for instances). Volumes name their instance but do not hold it back:
    an instance's removal leaves its attachments to the volume service to settle."""

    def add(self, volume: Volume) -> None:
        """``NotFound`` for an unknown user; ``AlreadyExists`` for an id in use or a taken
        attachment point; ``InvalidInput`` for text past the bounds (``checked_volume``)."""

    def get(self, volume_id: str) -> Volume | None:
        """The volume, or ``None``."""

    def list(
        self, *, user_id: UserId | None = None, instance_id: InstanceId | None = None
    ) -> list[Volume]:
        """The volumes (of ``user_id``, attached to ``instance_id``, when given), by id."""

    def transition(self, volume_id: str, expected: VolumeState, volume: Volume) -> Volume:
        """Replace the volume by ``volume`` (the same id and owner) if its stored state is
        still ``expected`` (``StateConflict``; ``NotFound`` when it is gone); the errors of
        ``add`` for the new attachment."""

    def remove(self, volume_id: str, expected: VolumeState) -> None:
        """Delete the volume and its tags if it is still in ``expected`` (``StateConflict``,
        ``NotFound``)."""


class SnapshotRepository(Protocol):
    """Users' snapshots of volumes; a snapshot outlives its volume and a volume its snapshot."""

    def add(self, snapshot: Snapshot) -> None:
        """``NotFound`` for an unknown user; ``AlreadyExists`` for an id in use;
        ``InvalidInput`` for text past the bounds."""

    def get(self, snapshot_id: str) -> Snapshot | None: ...

    def list(
        self, *, user_id: UserId | None = None, volume_id: str | None = None
    ) -> list[Snapshot]:
        """The snapshots (of ``user_id``, of ``volume_id``, when given), by id."""

    def transition(self, snapshot_id: str, expected: SnapshotState, new: SnapshotState) -> Snapshot:
        """Compare-and-swap of the state (``StateConflict``, ``NotFound``)."""

    def remove(self, snapshot_id: str, expected: SnapshotState) -> None:
        """Delete the snapshot and its tags if it is still in ``expected``."""


class InstanceEventRepository(Protocol):
    """The instance history: an append-only log that outlives the instance it tells of."""

    def add(
        self, instance_id: InstanceId, kind: str, message: str, *, now: datetime
    ) -> InstanceEvent:
        """Append an event at ``now`` and return it with its new id (ids grow in the order
        events are added and are never reused). The instance need not exist: history is
        written as an instance goes and read after it is gone. ``kind`` is a short word
        (1 to ``EVENT_KIND_MAX`` characters, else ``InvalidInput``); a ``message`` longer than
        ``EVENT_MESSAGE_MAX`` characters is kept cut to that length, ending in "…"."""

    def list(
        self, instance_id: InstanceId, *, limit: int = 100, after_id: int | None = None
    ) -> list[InstanceEvent]:
        """The instance's newest ``limit`` events (``limit`` >= 0, else ``InvalidInput``),
        oldest first: in the order they were added, which is id order (``at`` is the caller's
        clock and may repeat). With ``after_id`` (keyset paging from the start): its oldest
        ``limit`` events whose id is greater than ``after_id``, oldest first."""

    def purge_before(self, when: datetime) -> int:
        """Delete every event whose ``at`` is earlier than ``when``; return how many."""

    def purge_beyond(self, per_instance: int) -> int:
        """Keep the newest ``per_instance`` events of each instance (by id, as ``list``
        returns them; ``per_instance`` >= 0, else ``InvalidInput``) and delete the older
        ones; return how many. Ids stay never reused."""


@dataclass(frozen=True, slots=True)
class Address:
    """An IPv4 address allocated to NIC ``nic_index`` of an instance on a network."""

    network_id: NetworkId
    ip: str
    instance_id: InstanceId
    nic_index: int


class AddressRepository(Protocol):
    """The addresses the DHCP/DNS hook hands out, so that no restart hands one out twice.

    An address is unique per network (``AlreadyExists`` otherwise, race-free: two units that
    pick the same address cannot both commit). Addresses the NICs of other instances carry
    (``nics[i].ip``) count as taken too; the instance's own do not, so that an address a user
    gave a NIC at createVm can be allocated to it (ask for the one-address range)."""

    def allocate(
        self,
        instance_id: InstanceId,
        nic_index: int,
        network_id: NetworkId,
        first: str,
        last: str,
    ) -> Address:
        """The address of NIC ``nic_index`` of the instance on ``network_id``: the one it
        already has there (idempotent; a retry gets the same address), otherwise the lowest free
        one from ``first`` to ``last`` inclusive. ``InsufficientResources`` when the range is
        full; ``NotFound`` for an unknown instance or network; ``InvalidInput`` for a range that
        is not two IPv4 addresses in order; ``AlreadyExists`` when a concurrent unit took the
        same address first (run the unit again)."""

    def release(self, instance_id: InstanceId) -> int:
        """Release every address of the instance; return how many there were."""

    def list(
        self,
        *,
        network_id: NetworkId | None = None,
        instance_id: InstanceId | None = None,
        after_instance: InstanceId | None = None,
        instances: int | None = None,
    ) -> list[Address]:
        """Allocated addresses (all given filters match), by instance id then NIC index.
        Paged by instance, so that a page never splits an instance's NICs: only instances
        with an id greater than ``after_instance``, the addresses of at most ``instances``
        of them (>= 0, else ``InvalidInput``)."""


class Transaction(Protocol):
    """The repositories of one unit of work (read-only members, so that an implementation may
    hold its own repository classes)."""

    @property
    def instances(self) -> InstanceRepository: ...

    @property
    def hosts(self) -> HostRepository: ...

    @property
    def networks(self) -> NetworkRepository: ...

    @property
    def users(self) -> UserRepository: ...

    @property
    def tokens(self) -> TokenRepository: ...

    @property
    def access_keys(self) -> AccessKeyRepository: ...

    @property
    def key_pairs(self) -> KeyPairRepository: ...

    @property
    def key_pair_tags(self) -> TagRepository: ...

    @property
    def image_tags(self) -> TagRepository: ...

    @property
    def volumes(self) -> VolumeRepository: ...

    @property
    def snapshots(self) -> SnapshotRepository: ...

    @property
    def volume_tags(self) -> TagRepository: ...

    @property
    def snapshot_tags(self) -> TagRepository: ...

    @property
    def security_groups(self) -> SecurityGroupRepository: ...

    @property
    def security_group_tags(self) -> TagRepository: ...

    @property
    def events(self) -> InstanceEventRepository: ...

    @property
    def addresses(self) -> AddressRepository: ...


class Store(Protocol):
    #: How many write transactions can usefully run at once. SQLite has one writer: callers
    #: queue their writes in-process rather than letting SQLite's busy handler sleep and retry,
    #: which is what makes tail latencies long.
    max_writers: int

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Transaction]: ...

    def close(self) -> None: ...
