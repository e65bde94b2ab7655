"""Host administration: the original ``tashi-admin`` verbs and SLA@SOI's ``setHostConfig``.

Reading hosts is open to every authenticated caller (``getVmLayout`` needs it); changing them
needs the admin role. Node managers register and report themselves through their own contract.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_admin
from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.confirmations import Confirmations
from tashi.domain import validation
from tashi.domain.clock import Clock
from tashi.domain.errors import InvalidInput, InvalidState
from tashi.domain.ids import HostId
from tashi.domain.models import Host, HostReport, Principal, Usage, User
from tashi.domain.states import ON_HOST, SETTABLE_HOST_STATES, HostState, InstanceState
from tashi.storage.contract import InstanceFilter, Transaction

_RESIDENT = sorted(ON_HOST | {InstanceState.Orphaned})
# What takes a host's capacity: every instance placed on it, whatever it is doing.
_PLACED = sorted(
    set(InstanceState)
    - {
        InstanceState.Pending,
        InstanceState.Held,
        InstanceState.Suspended,
        InstanceState.Stopped,
        InstanceState.Exited,
    }
)


class HostService:
    def __init__(self, db: Database, clock: Clock, confirmations: Confirmations) -> None:
        self._db = db
        self._clock = clock
        self._confirmations = confirmations

    async def reports(self, ids: Collection[HostId]) -> dict[HostId, HostReport]:
        """For each of these hosts, when it last reported its VMs and whether it has since the
        cluster manager started (``hosts.confirmations``, which answers for every confirmed
        host without a read); a host gone meanwhile is left out."""
        found: dict[HostId, HostReport] = {}
        unconfirmed = set()
        for host_id in ids:
            at = self._confirmations.last_report(host_id)
            if at is None:
                unconfirmed.add(host_id)
            else:
                found[host_id] = HostReport(at=at, confirmed=True)
        if not unconfirmed:
            return found

        chosen = await self._db.read(lambda tx: tx.hosts.list(ids=unconfirmed))
        found.update((h.id, self.report(h)) for h in chosen)
        return found

    def report(self, host: Host) -> HostReport:
        """The same for a host just read (its last heartbeat as recorded)."""
        return HostReport(
            at=host.last_heartbeat,
            confirmed=self._confirmations.last_report(host.id) is not None,
        )

    async def list(self, caller: Principal) -> list[Host]:
        return await self._db.read(lambda tx: tx.hosts.list())

    async def list_with_usage(
        self, caller: Principal, *, after: HostId | None = None, limit: int | None = None
    ) -> builtins.list[tuple[Host, Usage]]:
        """Hosts with what their placed instances take (the scheduler's snapshot), read in one
        transaction: a page of them (``getHosts``'s ``after``/``limit``, keyset paging by id)
        when a limit is given, summing the usage of that page's hosts only."""

        def run(tx: Transaction) -> builtins.list[tuple[Host, Usage]]:
            page = tx.hosts.list(after_id=after, limit=limit)
            paged = after is not None or limit is not None
            usage = tx.instances.usage_by_host(_PLACED, [h.id for h in page] if paged else None)
            return [(h, usage.get(h.id, Usage())) for h in page]

        return await self._db.read(run)

    async def get(self, caller: Principal, ref: str) -> Host:
        return await self._db.read(lambda tx: refs.host(tx, ref))

    async def register_host(
        self, caller: Principal, name: str, *, memory: int = 0, cores: int = 0, version: str = ""
    ) -> Host:
        """``registerHost``/``addHost``: its node manager fills in memory, cores and version."""
        require_admin(caller, "registering hosts")
        validation.host_name(name)
        if memory < 0 or cores < 0:
            raise InvalidInput("memory and cores cannot be negative")
        now = self._clock.now()
        return await self._db.write(
            lambda tx: tx.hosts.add(name, memory=memory, cores=cores, version=version, now=now)
        )

    async def unregister_host(self, caller: Principal, ref: str) -> Host:
        """``unregisterHost``/``delHost``: refused while instances live on the host."""
        require_admin(caller, "unregistering hosts")

        def run(tx: Transaction) -> Host:
            host = refs.host(tx, ref)
            resident = tx.instances.count(InstanceFilter(host_id=host.id, states=_RESIDENT))
            if resident:
                raise InvalidState(
                    f"host {host.name!r} still has {resident} instance(s); move or destroy them"
                    " first"
                )
            tx.hosts.remove(host.id)
            return host

        return await self._db.write(run)

    async def set_state(self, caller: Principal, ref: str, state: str) -> Host:
        """``setHostState``: Normal or Drained. VersionMismatch is set and cleared by the
        heartbeats of the host's node manager."""
        require_admin(caller, "setting host states")
        wanted = HostState.parse(state)
        if wanted not in SETTABLE_HOST_STATES:
            raise InvalidInput(f"{wanted.name} cannot be set by hand; use Normal or Drained")

        def run(tx: Transaction) -> Host:
            host = refs.host(tx, ref)
            if host.state is HostState.VersionMismatch:
                raise InvalidState(
                    f"host {host.name!r} runs another Tashi version; update its node manager"
                )
            return tx.hosts.set_state(host.id, host.state, wanted)

        return await self._db.write(run)

    async def set_notes(self, caller: Principal, ref: str, notes: str) -> Host:
        require_admin(caller, "setting host notes")
        text = validation.notes(notes)
        return await self._db.write(lambda tx: tx.hosts.update(refs.host(tx, ref).id, notes=text))

    async def set_config(self, caller: Principal, ref: str, elements: dict[str, str]) -> Host:
        """SLA@SOI ``setHostConfig``: set configuration elements (auditability, isolation,
        location, …); an empty value removes an element."""
        require_admin(caller, "configuring hosts")
        validation.hints(elements)

        def run(tx: Transaction) -> Host:
            host = refs.host(tx, ref)
            merged = {**host.config, **elements}
            config = {k: v for k, v in merged.items() if v != ""}
            return tx.hosts.update(host.id, config=config)

        return await self._db.write(run)

    async def add_reservation(self, caller: Principal, host_ref: str, user_ref: str) -> Host:
        require_admin(caller, "reserving hosts")
        return await self._db.write(
            lambda tx: tx.hosts.add_reservation(
                refs.host(tx, host_ref).id, refs.user(tx, user_ref).id
            )
        )

    async def del_reservation(self, caller: Principal, host_ref: str, user_ref: str) -> Host:
        require_admin(caller, "reserving hosts")
        return await self._db.write(
            lambda tx: tx.hosts.remove_reservation(
                refs.host(tx, host_ref).id, refs.user(tx, user_ref).id
            )
        )

    async def get_reservation(
        self, caller: Principal, host_ref: str
    ) -> tuple[Host, builtins.list[User]]:
        require_admin(caller, "reading host reservations")

        def run(tx: Transaction) -> tuple[Host, builtins.list[User]]:
            host = refs.host(tx, host_ref)
            return host, [tx.users.get(u) for u in host.reserved]

        return await self._db.read(run)
