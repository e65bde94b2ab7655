"""VMM drivers by name: ``[NodeManager] vmm`` picks one when the node manager starts.

The table below is the whole list; a name that is not in it stops the node manager at start-up
with a message that lists the names there are. A name is only ever looked up in this table, never
imported or evaluated. The QEMU driver is imported only when chosen, so a node manager running the
fake (a simulation of thousands of hosts) never loads ``qemu.qmp``.
"""

from __future__ import annotations

from collections.abc import Callable

from tashi.config.settings import Settings
from tashi.domain.errors import InvalidInput
from tashi.vmm.base import VmmDriver

Factory = Callable[[Settings, "str | None"], VmmDriver]


def _qemu(settings: Settings, netns: str | None) -> VmmDriver:
    from tashi.vmm.qemu.driver import QemuDriver

    return QemuDriver(settings.qemu, images_dir=settings.vfs.prefix / "images", netns=netns)


def _fake(settings: Settings, netns: str | None) -> VmmDriver:
    from tashi.vmm.fake import FakeDriver

    return FakeDriver()


DRIVERS: dict[str, Factory] = {
    "qemu": _qemu,
    "fake": _fake,
}


def names() -> list[str]:
    return sorted(DRIVERS)


def create_driver(
    settings: Settings, *, name: str | None = None, netns: str | None = None
) -> VmmDriver:
    """The driver ``name`` (default ``[NodeManager] vmm``), its VMs run in network namespace
    ``netns`` (``None``: the node manager's own), where the network driver makes their taps."""
    chosen = name if name is not None else settings.node_manager.vmm
    factory = DRIVERS.get(chosen)
    if factory is None:
        raise InvalidInput(
            f"[NodeManager] vmm = {chosen!r} is not a VMM driver;"
            f" choose one of: {', '.join(names())}"
        )
    return factory(settings, netns)
