"""``ClusterService``: the cluster manager's operations, one service per noun, wired together.

Front-ends receive a ``ClusterService`` and call one method per request; composition roots
(``daemons/cm.py``, tests) build it with ``build_service``. Every collaborator is handed over
when its user is built; what several parts react to goes through the event hub
(``ClusterService.events``, ``clustermanager.events``), and ``_subscribe`` is the one table of
who reacts to what inside the cluster manager.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import tashi
from tashi.clustermanager.accounts.accesskeys import KEY_FILE as ACCESS_KEY_FILE
from tashi.clustermanager.accounts.accesskeys import AccessKeyService, Sealer
from tashi.clustermanager.accounts.auth import AuthService
from tashi.clustermanager.accounts.throttle import ThrottleRules
from tashi.clustermanager.accounts.users import UserService
from tashi.clustermanager.database import Database
from tashi.clustermanager.events import (
    FirewallReported,
    HostDown,
    HostUp,
    InstanceStateChanged,
    StartFailed,
    VmStopped,
)
from tashi.clustermanager.hosts.book import HostBook
from tashi.clustermanager.hosts.confirmations import Confirmations
from tashi.clustermanager.hosts.ha import HighAvailability
from tashi.clustermanager.hosts.liveness import Liveness
from tashi.clustermanager.hosts.nodereports import NodeReports, NodeRules
from tashi.clustermanager.hosts.nodes import NodeGateway, NoNodeManagers
from tashi.clustermanager.hosts.renewals import Renewals
from tashi.clustermanager.hosts.service import HostService
from tashi.clustermanager.hosts.witnesses import WitnessDesk
from tashi.clustermanager.images.service import ImageService
from tashi.clustermanager.instances.attributes import AttributeService
from tashi.clustermanager.instances.batches import BatchService
from tashi.clustermanager.instances.claims import OverRates
from tashi.clustermanager.instances.deadlines import Deadlines
from tashi.clustermanager.instances.groups import GroupService
from tashi.clustermanager.instances.history import HistoryRetention
from tashi.clustermanager.instances.nics import NicService
from tashi.clustermanager.instances.service import InstanceRules, InstanceService
from tashi.clustermanager.instances.specs import SpecRules
from tashi.clustermanager.instances.suspends import SuspendArea
from tashi.clustermanager.keypairs.service import KeyPairService
from tashi.clustermanager.networks.addresses import AddressService
from tashi.clustermanager.networks.service import NetworkService
from tashi.clustermanager.secgroups.service import SecurityGroupService
from tashi.clustermanager.secgroups.sync import FirewallSync
from tashi.clustermanager.tags import TagService
from tashi.clustermanager.volumes.service import VolumeService
from tashi.config.settings import Settings
from tashi.domain.clock import Clock, SystemClock
from tashi.domain.ids import NetworkId
from tashi.domain.states import InstanceState
from tashi.domain.validation import Limits
from tashi.images.store import ImageStore
from tashi.runtime.hub import EventHub
from tashi.storage.contract import InstanceFilter, Store


@dataclass(frozen=True, slots=True)
class ClusterService:
    db: Database
    auth: AuthService
    access_keys: AccessKeyService
    key_pairs: KeyPairService
    tags: TagService
    instances: InstanceService
    attributes: AttributeService
    batches: BatchService
    hosts: HostService
    networks: NetworkService
    users: UserService
    images: ImageService
    node_reports: NodeReports
    renewals: Renewals  # the group commit of heartbeat renewals (``tashi-cm`` steps it)
    liveness: Liveness
    deadlines: Deadlines
    nodes: NodeGateway
    groups: GroupService
    ha: HighAvailability
    addresses: AddressService
    history: HistoryRetention
    #: What the services publish (``clustermanager.events``): subscribe here to react.
    events: EventHub
    security_groups: SecurityGroupService
    #: Sends each host its VMs' security-group policy; ``step`` is its worker's loop body.
    firewalls: FirewallSync
    #: Volumes and snapshots (EC2's EBS); ``reconcile`` is a loop body of the cluster manager.
    volumes: VolumeService
    #: NICs added to and removed from existing instances (hot-plugged where a VM runs).
    nics: NicService

    async def instance_counts(self) -> dict[InstanceState, int]:
        """Instances per state, for ``/metrics``."""
        return await self.db.read(
            lambda tx: {
                s: tx.instances.count(InstanceFilter(states=[s]))
                for s in InstanceState
                if s is not InstanceState.Exited
            }
        )

    async def aclose(self) -> None:
        await self.volumes.aclose()
        await self.images.aclose()
        await self.nodes.close()

    def close(self) -> None:
        self.db.close()


def build_service(
    settings: Settings,
    store: Store,
    *,
    clock: Clock | None = None,
    nodes: Callable[[Database], NodeGateway] | None = None,
    db_workers: int | None = None,
) -> ClusterService:
    """The cluster manager's services over ``store``; ``db_workers`` reader threads (default
    ``[SQL] poolSize``, which the store's pool is sized for)."""
    clock = clock or SystemClock()
    hub = EventHub()
    db = Database(store, workers=db_workers or settings.sql.pool_size, hub=hub)
    svc, cm = settings.cluster_manager_service, settings.cluster_manager
    images = ImageStore(settings.vfs.prefix)
    rules = InstanceRules(
        specs=SpecRules(
            limits=Limits(max_cores=svc.max_cores, max_memory=svc.max_memory),
            default_network=NetworkId(svc.default_network),
            images=images,
        ),
        allow_duplicate_names=svc.allow_duplicate_names,
        max_batch=svc.max_batch,
        migrate_timeout=settings.qemu.migrate_timeout,
        over_rates=OverRates(memory=svc.memory_over_rate, cores=svc.cpu_cores_over_rate),
    )
    security = settings.security
    throttle = ThrottleRules(
        per_pair=security.login_failures,
        per_source=security.login_failures_per_source,
        per_user=security.login_failures_per_user,
        window=security.login_window,
    )
    auth = AuthService(db, clock, security.token_lifetime, throttle)
    keys = AccessKeyService(db, clock, Sealer(cm.state_dir / ACCESS_KEY_FILE))
    gateway = nodes(db) if nodes is not None else NoNodeManagers()
    image_service = ImageService(images, db, clock)
    suspends = SuspendArea(settings.vfs.prefix)
    instances = InstanceService(db, gateway, clock, rules, image_service, suspends, hub)
    groups = GroupService(db, instances, clock)
    desk = WitnessDesk(gateway, svc.lease_witnesses, svc.host_lease_time, svc.restart_margin)
    ha = HighAvailability(db, clock, svc.host_lease_time, svc.restart_margin, desk, suspends)
    confirmations = Confirmations()
    book = HostBook(clock)
    db.feed.on_touch(book.touch)
    renewals = Renewals(db)
    reports = NodeReports(
        db,
        clock,
        NodeRules(
            version=tashi.__version__,
            allow_mismatched_versions=svc.allow_mismatched_versions,
            heartbeat_interval=settings.node_manager_service.register_frequency,
            expire_host_time=svc.expire_host_time,
            grace=svc.reconcile_grace,
            allow_duplicate_names=svc.allow_duplicate_names,
            host_lease=svc.host_lease_time,
        ),
        gateway,
        witnesses=desk,
        suspends=suspends,
        reported=ha,
        awaited=instances.awaited,  # the same set, live
        hub=hub,
        confirmations=confirmations,
        book=book,
        renewals=renewals,
    )
    firewalls = FirewallSync(db, gateway)
    volumes = VolumeService(db, clock, gateway, images)
    _subscribe(hub, groups, confirmations, firewalls, volumes)
    return ClusterService(
        db=db,
        auth=auth,
        access_keys=keys,
        key_pairs=KeyPairService(db, clock),
        tags=TagService(db, clock, image_service),
        instances=instances,
        attributes=AttributeService(db, clock, rules.specs.limits),
        batches=BatchService(instances, svc.max_batch),
        hosts=HostService(db, clock, confirmations),
        networks=NetworkService(db, NetworkId(svc.default_network)),
        users=UserService(db, clock, auth, keys),
        images=image_service,
        node_reports=reports,
        renewals=renewals,
        liveness=Liveness(db, clock, gateway, svc.expire_host_time),
        deadlines=Deadlines(
            db, clock, gateway, settle_migration=instances.settle_migration, lost=ha
        ),
        nodes=gateway,
        groups=groups,
        ha=ha,
        addresses=AddressService(db, clock),
        history=HistoryRetention(db, clock, cm.history_lifetime, cm.history_per_instance),
        events=hub,
        security_groups=SecurityGroupService(db, clock, firewalls),
        firewalls=firewalls,
        volumes=volumes,
        nics=NicService(db, clock, gateway, NetworkId(svc.default_network)),
    )


def _subscribe(
    hub: EventHub,
    groups: GroupService,
    confirmations: Confirmations,
    firewalls: FirewallSync,
    volumes: VolumeService,
) -> None:
    """Who reacts to what, inside the cluster manager (in this order for each event)."""
    hub.subscribe(StartFailed, groups.start_failed)  # a group still starting is torn down
    hub.subscribe(VmStopped, groups.vm_stopped)  # ... and so when a member's VM ends
    hub.subscribe(HostDown, confirmations.host_down)  # its instances' states are unconfirmed
    # a member of security groups came, moved or went: hosts' policies change (before a VM
    # lands on a host, that host's is sent, awaited here); a node registered again: send anew
    hub.subscribe(InstanceStateChanged, firewalls.on_instance)
    hub.subscribe(HostUp, firewalls.on_host_up)
    # a node's full report named the policy version it enforces: sent anew if it differs
    hub.subscribe(FirewallReported, firewalls.on_reported)
    hub.subscribe(InstanceStateChanged, volumes.instance_changed)  # gone: its volumes are freed
