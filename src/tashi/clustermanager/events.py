"""What the cluster manager's services publish on its event hub (``tashi.runtime.hub``).

Several parts react to these, and more will (accounting, the XMPP publisher, the stream API,
metrics): they subscribe to the hub, the services never call them.

* ``InstanceStateChanged``, ``HostUp`` and ``HostDown`` are published by ``Database.write``
  after the commit of every write transaction that recorded them (``watch.Watched`` sees each
  instance's state change and each host's up flag change, whichever service wrote them), in
  the order they were written, before ``write`` returns. A write whose caller was cancelled
  still publishes what it committed.
* ``StartFailed`` (``InstanceService.start_on``: a node refused to start the VM) and
  ``VmStopped`` (``NodeReports``: a node reports that a VM failed or exited) say why, besides
  the state change they also cause; ``GroupService`` tears a group's start down on them.
* ``FirewallReported`` (``NodeReports``): the security-group policy version a node reported
  enforcing in a registration or a heartbeat that went the whole way (a renewal says nothing
  new, that version included: ADR 0023); ``FirewallSync`` sends it its policy if that differs.
* ``InstanceAdapted`` (``InstanceService.adapt_cpu_share``): a VM's resources changed without
  a state change (SLA@SOI's adaptations); the XMPP publisher tells it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tashi.domain.ids import HostId, InstanceId
from tashi.domain.models import Host, Instance
from tashi.domain.states import InstanceState


@dataclass(frozen=True, slots=True)
class InstanceStateChanged:
    """An instance's recorded state changed: ``previous`` ``None`` for a new one (created or
    adopted); ``instance`` as it is now, or, once removed (``current`` is ``Exited``), ``None``."""

    instance_id: InstanceId
    previous: InstanceState | None
    current: InstanceState
    instance: Instance | None


@dataclass(frozen=True, slots=True)
class HostUp:
    """A host was down (or new) and is up: its node manager registered or reports again."""

    host: Host


@dataclass(frozen=True, slots=True)
class HostDown:
    """A host was up and is now taken for down (its heartbeats stopped, say)."""

    host: Host


@dataclass(frozen=True, slots=True)
class FirewallReported:
    """A host's node manager reported the version of the security-group policy it enforces
    (``None``: it does not say, an older node manager)."""

    host_id: HostId
    version: str | None


@dataclass(frozen=True, slots=True)
class StartFailed:
    """A node did not start ``instance`` (as it was when asked), for ``why``; it is Held."""

    instance: Instance
    why: str


@dataclass(frozen=True, slots=True)
class VmStopped:
    """A node reports that the VM of ``instance`` (as it was before the report) failed or
    exited on its own, for ``why``."""

    instance: Instance
    why: str


@dataclass(frozen=True, slots=True)
class InstanceAdapted:
    """``instance`` (as it is now) was adapted: ``changes`` maps what changed (``cpuShare``) to
    its new value."""

    instance: Instance
    changes: Mapping[str, int]
