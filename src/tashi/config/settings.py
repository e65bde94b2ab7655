"""Every setting Tashi reads: ``Settings``, one frozen dataclass per ``.cfg`` section.

Option names are the original Tashi's wherever one existed. The sections live by family, each
declared with ``options.option`` so that the shipped ``TashiDefaults.cfg`` (generated from these
classes, in the order of ``Settings``' fields, see ``defaults.py``) documents every option:

* ``clustermanager.py``: ``[ClusterManager]``, ``[ClusterManagerService]``, ``[SQL]``, ``[Vfs]``,
  ``[Security]`` (and ``limits.py``, the HTTP limits both APIs declare);
* ``ec2.py``: ``[Ec2]``, ``[InstanceTypes]`` (a table: every line is a type);
* ``occi.py``: ``[OCCI]``;
* ``common.py``: ``[Client]``, ``[AccessClusterManager]``, ``[Logging]``;
* ``scheduler.py``: ``[Scheduler]``, ``[Primitive]``;
* ``nodemanager.py``: ``[NodeManager]``, ``[NodeManagerService]``, ``[Qemu]``;
* ``network.py``: ``[Bridge]``, ``[Vxlan]``, ``[DhcpDns]``;
* ``cluster.py``: ``[Cluster]`` (``tashi-cluster``);
* ``xmpp.py``: ``[XMPP]`` (``tashi-xmpp`` and the event publisher of ``tashi-cm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tashi.config.cluster import ClusterSettings
from tashi.config.clustermanager import (
    ClusterManagerServiceSettings,
    ClusterManagerSettings,
    SecuritySettings,
    SqlSettings,
    VfsSettings,
)
from tashi.config.common import AccessClusterManagerSettings, ClientSettings, LoggingSettings
from tashi.config.ec2 import Ec2Settings, InstanceTypesSettings
from tashi.config.network import BridgeSettings, DhcpDnsSettings, VxlanSettings
from tashi.config.nodemanager import (
    NodeManagerServiceSettings,
    NodeManagerSettings,
    QemuSettings,
)
from tashi.config.occi import OcciSettings
from tashi.config.scheduler import PrimitiveSettings, SchedulerSettings
from tashi.config.xmpp import XmppSettings


@dataclass(frozen=True, slots=True)
class Settings:
    """All settings of one program, parsed once at start-up."""

    cluster_manager: ClusterManagerSettings = field(default_factory=ClusterManagerSettings)
    cluster_manager_service: ClusterManagerServiceSettings = field(
        default_factory=ClusterManagerServiceSettings
    )
    sql: SqlSettings = field(default_factory=SqlSettings)
    vfs: VfsSettings = field(default_factory=VfsSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    ec2: Ec2Settings = field(default_factory=Ec2Settings)
    instance_types: InstanceTypesSettings = field(default_factory=InstanceTypesSettings)
    occi: OcciSettings = field(default_factory=OcciSettings)
    client: ClientSettings = field(default_factory=ClientSettings)
    access_cluster_manager: AccessClusterManagerSettings = field(
        default_factory=AccessClusterManagerSettings
    )
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    primitive: PrimitiveSettings = field(default_factory=PrimitiveSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    node_manager: NodeManagerSettings = field(default_factory=NodeManagerSettings)
    node_manager_service: NodeManagerServiceSettings = field(
        default_factory=NodeManagerServiceSettings
    )
    bridge: BridgeSettings = field(default_factory=BridgeSettings)
    vxlan: VxlanSettings = field(default_factory=VxlanSettings)
    dhcp_dns: DhcpDnsSettings = field(default_factory=DhcpDnsSettings)
    qemu: QemuSettings = field(default_factory=QemuSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    xmpp: XmppSettings = field(default_factory=XmppSettings)
