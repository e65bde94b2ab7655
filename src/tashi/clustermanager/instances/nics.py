"""NICs added to and removed from an existing instance: OCCI's networkinterface links made and
deleted on their own (``frontends/occi/nics.py``). (The REST API and the CLI have no verb for
it, as they have none for volumes, which only EC2 and OCCI attach.)

A NIC is one of the instance's ``nics`` (its network, a MAC chosen as createVm chooses one,
``specs.fresh_macs``, or the caller's), so every VM the instance gets has it: a start after a
stop, a migration target (the node manager starts it with all the recorded NICs). Whether a VM
must change now depends on the instance's state:

* **Running or Paused**: its node manager hot-plugs the NIC into the VM (``attach_nic``: a tap
  on the network's bridge, guarded by the security groups as a start guards its taps) or takes
  it out once the guest lets go (``detach_nic``);
* **Pending, Held or Stopped**: no VM; the record alone changes, and the next start has it (an
  activation moves the instance by a compare-and-swap over the record it read in the same
  unit, so it starts with the NIC or without it, never half of it);
* anything else (starting, stopping, migrating, suspended): ``InvalidState``, try again later.

Only the last NIC is removed, so the others keep their indices (the OCCI link
``<instance>-<n>``, the tap ``tashi<instance>.<n>``, the VM's PCI slots). The change is saved
by a compare-and-swap of the instance's state onto itself, before the node is asked for an
added NIC and after it answered for a removed one, so a VM never has a NIC its instance does
not name; a node that refused an add is undone at once. One whose answer was lost
(``Unanswered``) leaves the record with the NIC, and a warning: the node may not have plugged
it, and nothing asks it again yet (its calls are idempotent by MAC, so a reconcile could).
Adds and removes of one instance run one at a time.

The address: a NIC given one keeps it (``NicRequest.ip``). On a network with an ``ipRange`` the
scheduler's DhcpDns hook gives it one (``nics_changed``: adding or removing a NIC bumps the
change feed, and the scheduler's next round sees the running instance's NICs changed): its
address, static DHCP lease and DNS name, as the NICs the VM started with; a removed NIC's
address is released with it (``remove_nic``) and the hook withdraws its lease and name. A NIC
added to an instance with no VM gets its address when the instance is next activated.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

from tashi.clustermanager import refs
from tashi.clustermanager.accounts.auth import require_owner
from tashi.clustermanager.database import Database
from tashi.clustermanager.hosts.nodes import NodeGateway
from tashi.clustermanager.instances.specs import fresh_macs
from tashi.domain import validation
from tashi.domain.clock import Clock
from tashi.domain.errors import InvalidInput, InvalidState, NotFound, TashiError, Unanswered
from tashi.domain.ids import InstanceId, NetworkId
from tashi.domain.models import MAX_NICS, Host, Instance, NicConfig, Principal
from tashi.domain.operations import NicRequest
from tashi.domain.states import InstanceState
from tashi.storage.contract import Transaction

log = logging.getLogger(__name__)

S = InstanceState
HOT = frozenset({S.Running, S.Paused})  # a VM runs: hot-plug
COLD = frozenset({S.Pending, S.Held, S.Stopped})  # no VM: the record alone
DETACH_TIMEOUT = 30.0  # seconds a guest has to let a NIC go


class NicService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        nodes: NodeGateway,
        default_network: NetworkId,
        *,
        detach_timeout: float = DETACH_TIMEOUT,
    ) -> None:
        self._db = db
        self._clock = clock
        self._nodes = nodes
        self._default_network = default_network
        self.detach_timeout = detach_timeout
        # one lock per instance while a change of it is under way (gone with its last user:
        # nothing here grows with the instances ever changed)
        self._locks: weakref.WeakValueDictionary[InstanceId, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _lock(self, iid: InstanceId) -> asyncio.Lock:
        return self._locks.setdefault(iid, asyncio.Lock())

    async def attach(self, caller: Principal, ref: str, request: NicRequest) -> Instance:
        """A new NIC after the instance's last, hot-plugged into its VM if it runs; the
        instance as it now is (the NIC is its last)."""
        network = self._default_network if request.network is None else NetworkId(request.network)
        mac = validation.mac(request.mac) if request.mac else None
        ip = validation.ip_address(request.ip) if request.ip else None
        first = await self._db.read(lambda tx: self._visible(tx, caller, ref))
        async with self._lock(first.id):

            def begin(tx: Transaction) -> tuple[Instance, Host | None]:
                inst = self._ready(tx, caller, ref)
                if len(inst.nics) >= MAX_NICS:
                    raise InvalidInput(f"instance {inst.id} has {MAX_NICS} NICs, its most")
                try:
                    tx.networks.get(network)
                except NotFound:
                    raise NotFound(f"network {network} does not exist") from None
                nic = NicConfig(network, mac or fresh_macs(tx, 1, set())[0], ip)
                now = self._clock.now()
                added = tx.instances.add_nic(inst.id, inst.state, nic, now=now)
                return added, _host(tx, added)

            inst, host = await self._db.write(begin)
            if inst.state in HOT:
                await self._plug(inst, host)
            return inst

    async def _plug(self, inst: Instance, host: Host | None) -> None:
        nic = inst.nics[-1]
        try:
            if host is None:
                raise InvalidState(f"instance {inst.id} runs on no host")
            await self._nodes.attach_nic(host, inst, nic)
        except Unanswered:
            log.warning("instance %s: no answer from the node adding NIC %s", inst.id, nic.mac)
            raise
        except TashiError:
            await self._db.write(lambda tx: self._drop(tx, inst.id, nic.mac))
            raise

    async def detach(self, caller: Principal, ref: str, index: int) -> Instance:
        """The instance's last NIC, ``index``, removed (hot-unplugged from its VM once the guest
        lets it go: ``InvalidState`` if it does not in time, and it keeps the NIC)."""
        first = await self._db.read(lambda tx: self._visible(tx, caller, ref))
        async with self._lock(first.id):
            inst, host = await self._db.read(lambda tx: self._ready_on(tx, caller, ref))
            if not 0 <= index < len(inst.nics):
                raise NotFound(f"instance {inst.id} has no NIC {index}")
            if index != len(inst.nics) - 1:
                raise InvalidState(
                    f"NIC {index} of instance {inst.id} is not its last: remove NIC"
                    f" {len(inst.nics) - 1} first (only the last NIC is removed)"
                )
            mac = inst.nics[index].mac
            if inst.state in HOT:
                if host is None:
                    raise InvalidState(f"instance {inst.id} runs on no host")
                await self._nodes.detach_nic(host, inst, mac, self.detach_timeout)
            return await self._db.write(lambda tx: self._drop(tx, inst.id, mac))

    def _drop(self, tx: Transaction, iid: InstanceId, mac: str) -> Instance:
        """The NIC ``mac`` (the instance's last) leaves the record, whatever its state now."""
        now = self._clock.now()
        return tx.instances.remove_nic(iid, tx.instances.get(iid).state, mac, now=now)

    def _ready_on(
        self, tx: Transaction, caller: Principal, ref: str
    ) -> tuple[Instance, Host | None]:
        inst = self._ready(tx, caller, ref)
        return inst, _host(tx, inst)

    def _visible(self, tx: Transaction, caller: Principal, ref: str) -> Instance:
        inst = refs.instance(tx, ref)
        require_owner(caller, inst.user_id, "changing the NICs of another user's instance")
        return inst

    def _ready(self, tx: Transaction, caller: Principal, ref: str) -> Instance:
        inst = self._visible(tx, caller, ref)
        if inst.state not in HOT | COLD:
            raise InvalidState(
                f"instance {inst.id} is {inst.state.name}: NICs are added to and removed from"
                " running, paused, pending, held or stopped instances only"
            )
        return inst


def _host(tx: Transaction, inst: Instance) -> Host | None:
    if inst.host_id is None or inst.state not in HOT:
        return None
    try:
        return tx.hosts.get(inst.host_id)
    except NotFound:
        return None
