"""Network drivers by name: ``[NodeManager] network`` picks one when the node manager starts.

The table below is the whole list; a name that is not in it stops the node manager at start-up
with a message that lists the names there are. A name is only ever looked up in this table, never
imported or evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

from tashi.config.settings import Settings
from tashi.domain.errors import InvalidInput
from tashi.network.base import NetworkDriver
from tashi.network.bridge import BridgeDriver
from tashi.network.fake import FakeNetworkDriver
from tashi.network.vxlan import VxlanDriver

Factory = Callable[[Settings, "str | None"], NetworkDriver]


def _bridge(settings: Settings, netns: str | None) -> NetworkDriver:
    return BridgeDriver(settings.bridge, netns=netns)


def _vxlan(settings: Settings, netns: str | None) -> NetworkDriver:
    return VxlanDriver(settings.vxlan, netns=netns)


def _fake(settings: Settings, netns: str | None) -> NetworkDriver:
    return FakeNetworkDriver()


DRIVERS: dict[str, Factory] = {
    "bridge": _bridge,
    "fake": _fake,
    "vxlan": _vxlan,
}


def names() -> list[str]:
    return sorted(DRIVERS)


def create_driver(
    settings: Settings, *, name: str | None = None, netns: str | None = None
) -> NetworkDriver:
    """The driver ``name`` (default ``[NodeManager] network``) acting in namespace ``netns``
    (``None``: the node manager's own)."""
    chosen = name if name is not None else settings.node_manager.network
    factory = DRIVERS.get(chosen)
    if factory is None:
        raise InvalidInput(
            f"[NodeManager] network = {chosen!r} is not a network driver;"
            f" choose one of: {', '.join(names())}"
        )
    return factory(settings, netns)
