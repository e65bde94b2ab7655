"""``ClusterService``: the cluster manager's operations, one service per noun, wired together.

Front-ends receive a ``ClusterService`` and call one method per request; composition roots
(``daemons/cm.py``, tests) build it with ``build_service``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tashi.clustermanager.auth import AuthService
from tashi.clustermanager.batches import BatchService
from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts import HostService
from tashi.clustermanager.images import ImageService
from tashi.clustermanager.instances import InstanceRules, InstanceService
from tashi.clustermanager.networks import NetworkService
from tashi.clustermanager.nodes import NodeGateway, NoNodeManagers
from tashi.clustermanager.specs import SpecRules
from tashi.clustermanager.users import UserService
from tashi.config.settings import Settings
from tashi.domain.clock import Clock, SystemClock
from tashi.domain.ids import NetworkId
from tashi.domain.states import InstanceState
from tashi.domain.validation import Limits
from tashi.images.store import ImageStore
from tashi.storage.contract import InstanceFilter, Store


@dataclass(frozen=True, slots=True)
class ClusterService:
    db: Database
    auth: AuthService
    instances: InstanceService
    batches: BatchService
    hosts: HostService
    networks: NetworkService
    users: UserService
    images: ImageService

    async def instance_counts(self) -> dict[InstanceState, int]:
        """Instances per state, for ``/metrics``."""
        return await self.db.read(
            lambda tx: {
                s: tx.instances.count(InstanceFilter(states=[s]))
                for s in InstanceState
                if s is not InstanceState.Exited
            }
        )

    def close(self) -> None:
        self.db.close()


def build_service(
    settings: Settings,
    store: Store,
    *,
    clock: Clock | None = None,
    nodes: NodeGateway | None = None,
    db_workers: int = 8,
) -> ClusterService:
    clock = clock or SystemClock()
    db = Database(store, workers=db_workers)
    svc = settings.cluster_manager_service
    images = ImageStore(settings.vfs.prefix)
    rules = InstanceRules(
        specs=SpecRules(
            limits=Limits(max_cores=svc.max_cores, max_memory=svc.max_memory),
            default_network=NetworkId(svc.default_network),
            images=images,
        ),
        allow_duplicate_names=svc.allow_duplicate_names,
        max_batch=svc.max_batch,
    )
    auth = AuthService(db, clock, settings.security.token_lifetime)
    instances = InstanceService(db, nodes or NoNodeManagers(), clock, rules)
    return ClusterService(
        db=db,
        auth=auth,
        instances=instances,
        batches=BatchService(instances, svc.max_batch),
        hosts=HostService(db, clock),
        networks=NetworkService(db, NetworkId(svc.default_network)),
        users=UserService(db, clock, auth),
        images=ImageService(images),
    )
