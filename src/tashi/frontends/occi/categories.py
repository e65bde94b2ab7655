"""OCCI's categories as Tashi serves them: the kinds, mixins and actions of OCCI Core (GFD.221)
and Infrastructure (GFD.224), with their attribute definitions.

A ``Category`` is the one shape every rendering (``text.py``, ``jsonrender.py``) reads: a
kind has a ``parent``, a mixin ``depends`` and ``applies``, an action neither; a kind or mixin
has a ``location`` (its collection, a path). The fixed model is built here once; the mixins
Tashi generates from its own tables (an ``os_tpl`` per image, a ``resource_tpl`` per instance
type) come from ``templates`` in ``model.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

CORE = "http://schemas.ogf.org/occi/core#"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
COMPUTE_ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
NETWORK_ACTION = "http://schemas.ogf.org/occi/infrastructure/network/action#"
STORAGE_ACTION = "http://schemas.ogf.org/occi/infrastructure/storage/action#"
NETWORK_MIXIN = "http://schemas.ogf.org/occi/infrastructure/network#"
NETIF_MIXIN = "http://schemas.ogf.org/occi/infrastructure/networkinterface#"
NETIF_ACTION = "http://schemas.ogf.org/occi/infrastructure/networkinterface/action#"
#: the schemes of the templates Tashi generates (their terms are image and type names)
OS_TPL_SCHEME = "http://schemas.tashi.apache.org/occi/os_tpl#"
RESOURCE_TPL_SCHEME = "http://schemas.tashi.apache.org/occi/resource_tpl#"

Class = Literal["kind", "mixin", "action"]
AttrType = Literal["string", "number", "boolean", "array", "object"]


@dataclass(frozen=True, slots=True)
class Attribute:
    """An attribute definition (GFD.221 §4.4.1 ``Attribute``)."""

    name: str
    type: AttrType = "string"
    mutable: bool = True
    required: bool = False
    default: str | float | bool | None = None
    description: str = ""
    #: the values an ``Enum`` allows (checked on input, rendered as a JSON Schema pattern)
    enum: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Category:
    """A kind, mixin or action (GFD.221 §4.4)."""

    term: str
    scheme: str
    cls: Class
    title: str = ""
    attributes: tuple[Attribute, ...] = ()
    actions: tuple[str, ...] = ()  # type identifiers
    parent: str | None = None  # a kind's
    depends: tuple[str, ...] = ()  # a mixin's
    applies: tuple[str, ...] = ()  # a mixin's
    location: str | None = None  # a path, "/compute/"
    #: defaults a template sets on what it is applied to (a resource_tpl's cores and memory)
    defaults: Mapping[str, str | float | bool] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        """The type identifier: scheme and term."""
        return self.scheme + self.term


def _a(name: str, kind: AttrType = "string", **more: object) -> Attribute:
    return Attribute(name, kind, **more)  # type: ignore[arg-type]


def _state(
    kind: str, *values: str, default: str | None = None, message: str = ""
) -> tuple[Attribute, Attribute]:
    """A kind's ``occi.<kind>.state`` (one of ``values``, set by Tashi) and its
    ``state.message``, as every Infrastructure kind and link has them."""
    state = _a(f"occi.{kind}.state", mutable=False, required=True, default=default, enum=values)
    return state, _a(f"occi.{kind}.state.message", mutable=False, description=message)


def _action(scheme: str, term: str, title: str, *methods: str) -> Category:
    attrs = (_a("method", enum=methods),) if methods else ()
    return Category(term, scheme, "action", title, attrs)


START = _action(COMPUTE_ACTION, "start", "Start the compute")
STOP = _action(COMPUTE_ACTION, "stop", "Stop the compute", "graceful", "acpioff", "poweroff")
RESTART = _action(COMPUTE_ACTION, "restart", "Restart the compute", "graceful", "warm", "cold")
SUSPEND = _action(COMPUTE_ACTION, "suspend", "Suspend the compute", "hibernate", "suspend")
NETWORK_UP = _action(NETWORK_ACTION, "up", "Bring the network up")
NETWORK_DOWN = _action(NETWORK_ACTION, "down", "Take the network down")
STORAGE_ONLINE = _action(STORAGE_ACTION, "online", "Bring the storage online")
STORAGE_OFFLINE = _action(STORAGE_ACTION, "offline", "Take the storage offline")
STORAGE_BACKUP = _action(STORAGE_ACTION, "backup", "Back the storage up (a snapshot)")
STORAGE_SNAPSHOT = _action(STORAGE_ACTION, "snapshot", "Take a snapshot of the storage")
STORAGE_RESIZE = Category(
    "resize",
    STORAGE_ACTION,
    "action",
    "Resize the storage",
    (Attribute("size", "number", required=True, description="the new size in GiB"),),
)
NETIF_UP = _action(NETIF_ACTION, "up", "Bring the interface up")
NETIF_DOWN = _action(NETIF_ACTION, "down", "Take the interface down")
ACTIONS: tuple[Category, ...] = (
    START,
    STOP,
    RESTART,
    SUSPEND,
    NETWORK_UP,
    NETWORK_DOWN,
    STORAGE_ONLINE,
    STORAGE_OFFLINE,
    STORAGE_BACKUP,
    STORAGE_SNAPSHOT,
    STORAGE_RESIZE,
    NETIF_UP,
    NETIF_DOWN,
)

ENTITY = Category(
    "entity",
    CORE,
    "kind",
    "Entity",
    (
        _a("occi.core.id", mutable=False, required=True),
        _a("occi.core.title"),
    ),
)
RESOURCE = Category(
    "resource",
    CORE,
    "kind",
    "Resource",
    (_a("occi.core.summary"),),
    parent=ENTITY.id,
    location="/resource/",
)
LINK = Category(
    "link",
    CORE,
    "kind",
    "Link",
    (
        _a("occi.core.source", mutable=False, required=True),
        _a("occi.core.target", mutable=False, required=True),
    ),
    parent=ENTITY.id,
    location="/link/",
)
COMPUTE = Category(
    "compute",
    INFRA,
    "kind",
    "Compute Resource",
    (
        _a("occi.compute.architecture", enum=("x86", "x64"), default="x64"),
        _a("occi.compute.cores", "number", description="CPU cores"),
        _a("occi.compute.hostname", description="the instance's name, its DNS name"),
        _a("occi.compute.share", "number", description="relative CPU share (1024 by default)"),
        _a("occi.compute.speed", "number", mutable=False, description="GHz (not known)"),
        _a("occi.compute.memory", "number", description="memory in GiB"),
        *_state(
            "compute",
            "active",
            "inactive",
            "suspended",
            "error",
            default="inactive",
            message="Tashi's state",
        ),
    ),
    (START.id, STOP.id, RESTART.id, SUSPEND.id),
    parent=RESOURCE.id,
    location="/compute/",
)
NETWORK = Category(
    "network",
    INFRA,
    "kind",
    "Network Resource",
    (
        _a("occi.network.vlan", "number", description="the network's id (its VNI)"),
        _a("occi.network.label"),
        *_state("network", "active", "inactive", "error"),
    ),
    (NETWORK_UP.id, NETWORK_DOWN.id),
    parent=RESOURCE.id,
    location="/network/",
)
STORAGE = Category(
    "storage",
    INFRA,
    "kind",
    "Storage Resource",
    (
        _a("occi.storage.size", "number", required=True, description="size in GiB"),
        *_state("storage", "online", "offline", "error"),
    ),
    (
        STORAGE_ONLINE.id,
        STORAGE_OFFLINE.id,
        STORAGE_BACKUP.id,
        STORAGE_SNAPSHOT.id,
        STORAGE_RESIZE.id,
    ),
    parent=RESOURCE.id,
    location="/storage/",
)
NETWORKINTERFACE = Category(
    "networkinterface",
    INFRA,
    "kind",
    "Network Interface Link",
    (
        _a("occi.networkinterface.interface", mutable=False, required=True),
        _a("occi.networkinterface.mac", mutable=False, required=True),
        *_state("networkinterface", "active", "inactive", "error"),
    ),
    (NETIF_UP.id, NETIF_DOWN.id),
    parent=LINK.id,
    location="/link/networkinterface/",
)
STORAGELINK = Category(
    "storagelink",
    INFRA,
    "kind",
    "Storage Link",
    (
        _a("occi.storagelink.deviceid", mutable=False, required=True),
        _a("occi.storagelink.mountpoint", description="where the guest mounts it (kept)"),
        *_state("storagelink", "active", "inactive", "error"),
    ),
    parent=LINK.id,
    location="/link/storagelink/",
)
KINDS: tuple[Category, ...] = (
    ENTITY,
    RESOURCE,
    LINK,
    COMPUTE,
    NETWORK,
    STORAGE,
    NETWORKINTERFACE,
    STORAGELINK,
)

IPNETWORK = Category(
    "ipnetwork",
    NETWORK_MIXIN,
    "mixin",
    "IP Networking Mixin",
    (
        _a("occi.network.address", mutable=False),
        _a("occi.network.gateway", mutable=False),
        _a("occi.network.allocation", mutable=False, enum=("dynamic", "static")),
    ),
    applies=(NETWORK.id,),
    location="/mixin/ipnetwork/",
)
IPNETWORKINTERFACE = Category(
    "ipnetworkinterface",
    NETIF_MIXIN,
    "mixin",
    "IP Network Interface Mixin",
    (
        _a("occi.networkinterface.address", mutable=False),
        _a("occi.networkinterface.gateway", mutable=False),
        _a(
            "occi.networkinterface.allocation",
            mutable=False,
            enum=("dynamic", "static"),
        ),
    ),
    applies=(NETWORKINTERFACE.id,),
    location="/mixin/ipnetworkinterface/",
)
OS_TPL = Category(
    "os_tpl",
    INFRA,
    "mixin",
    "OS Template",
    applies=(COMPUTE.id,),
    location="/mixin/os_tpl/",
)
RESOURCE_TPL = Category(
    "resource_tpl",
    INFRA,
    "mixin",
    "Resource Template",
    applies=(COMPUTE.id,),
    location="/mixin/resource_tpl/",
)
MIXINS: tuple[Category, ...] = (IPNETWORK, IPNETWORKINTERFACE, OS_TPL, RESOURCE_TPL)


def definitions(category: Category, model: Mapping[str, Category]) -> tuple[Attribute, ...]:
    """The attributes ``category`` defines together with its parents' (a kind's chain)."""
    chain: list[Attribute] = []
    current: Category | None = category
    while current is not None:
        chain = list(current.attributes) + chain
        current = model.get(current.parent) if current.parent else None
    return tuple(chain)
