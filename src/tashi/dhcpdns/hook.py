"""The ``DhcpDns`` scheduler hook: an address per NIC, a static DHCP lease and DNS names.

The original Apache Tashi hook (``tashi.agents.DhcpDns``), kept in what a site configures
(``[DhcpDns]``: ``ipRange<networkId>``, ``dnsDomain``, ``dnsExpire``, ``reverseDns``) and fixed
where it lost state: the addresses are allocated by the cluster manager in its database (POST
``/v1/instances/{ref}/nics/{index}/address``, through the one API client over the agent's
connection), so a restarted scheduler never hands one out twice, and the leases and names are
published through a backend plugin (``backends/``; dnsmasq by default) rather than
``omshell``/``nsupdate``.

* ``before_activation``: for each NIC on a network with an ``ipRange<N>``, the address (the
  same one again on a retry), then one lease and name per NIC: NIC 0 is ``<name>`` (as
  ``<name>.[<subDomain hint>.]<dnsDomain>``), NIC i is ``<name>-nic<i>``. Networks without a
  range are left alone. Returns the instance with its addresses.
* ``nics_changed``: a NIC hot-plugged into a running (or paused) instance gets its address,
  lease and name as those it started with; a removed NIC's lease and name go (the cluster
  manager released its address with the NIC). The scheduler calls it in the round after the
  change (a NIC added or removed bumps the change feed).
* ``after_destroy``: withdraws the instance's leases and names (the cluster manager releases the
  addresses itself when it removes the instance).
* ``start``: rebuilds the backend's whole state from the instances the cluster knows (those not
  Exited, with addresses on ranged networks): idempotent, and the cure for a backend that missed
  a destroy while the scheduler was down. A running or paused instance with a NIC on a ranged
  network but no address (hot-plugged while the scheduler was down) gets its address first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from tashi.api.schemas import HostOut, InstanceOut, NicAddressOut
from tashi.apiclient.client import ApiClient
from tashi.config.loader import RawConfig, parse_settings
from tashi.config.network import DhcpDnsSettings
from tashi.dhcpdns.backends.base import DhcpDnsBackend, HostEntry
from tashi.dhcpdns.backends.registry import create_backend
from tashi.domain.errors import InvalidInput, TashiError
from tashi.domain.ids import InstanceId, NetworkId
from tashi.scheduler.hooks import HookContext, InstanceHook

log = logging.getLogger(__name__)

_RANGE_OPTION = re.compile(r"iprange(\d+)", re.IGNORECASE)
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
SUBDOMAIN_HINT = "subDomain"
PLACED = frozenset({"Running", "Paused"})  # a VM runs: a NIC it lacks an address for needs one


def parse_options(options: dict[str, str]) -> tuple[DhcpDnsSettings, dict[NetworkId, str]]:
    """``[DhcpDns]`` as typed settings plus the ``ipRange<N>`` ranges by network."""
    values = {("DhcpDns", k.lower()): (v, "[DhcpDns]") for k, v in options.items()}
    settings = parse_settings(RawConfig(values=values, files=())).dhcp_dns
    ranges = {}
    for key, value in options.items():
        match = _RANGE_OPTION.fullmatch(key.strip())
        if match and value.strip():
            ranges[NetworkId(int(match.group(1)))] = value.strip()
    return settings, ranges


def hostname(instance_name: str, nic_index: int) -> str:
    """A DNS label for the NIC: the instance name in lower case with anything else than
    letters, digits and '-' made '-', ``-nic<i>`` after NIC 0's name (as the original)."""
    label = _NOT_LABEL.sub("-", instance_name.lower()).strip("-") or "vm"
    suffix = f"-nic{nic_index}" if nic_index else ""
    return label[: 63 - len(suffix)].rstrip("-") + suffix


class DhcpDns:
    name = "DhcpDns"

    def __init__(
        self,
        api: ApiClient,
        settings: DhcpDnsSettings,
        ranges: dict[NetworkId, str],
        backend: DhcpDnsBackend,
    ) -> None:
        self._api = api
        self.settings = settings
        self.ranges = ranges
        self.backend = backend

    async def start(self, instances: Sequence[InstanceOut]) -> None:
        live = []
        for inst in instances:
            if inst.state == "Exited":
                continue
            if inst.state in PLACED and self._unaddressed(inst):
                # a NIC hot-plugged while the scheduler was down: its address now
                try:
                    inst = await self._addressed(inst)
                except TashiError as exc:
                    log.warning("no address for a NIC of %s: %s", inst.name, exc)
            live.append(inst)
        entries = [e for inst in live for e in self._entries(inst)]
        await self.backend.replace_all(entries)
        log.info("DhcpDns: %d leases and names published for the cluster's instances", len(entries))

    async def before_activation(self, instance: InstanceOut, host: HostOut) -> InstanceOut:
        instance = await self._addressed(instance)
        await self._republish(instance)
        return instance

    async def nics_changed(self, instance: InstanceOut) -> None:
        """A placed instance gained or lost NICs: the new ones on ranged networks get their
        addresses, leases and names now; those of removed NICs go (the cluster manager
        released their addresses when it removed them)."""
        instance = await self._addressed(instance)
        await self._republish(instance)

    async def after_destroy(self, instance: InstanceOut) -> None:
        await self.backend.withdraw(InstanceId(instance.id))

    async def close(self) -> None:
        await self.backend.close()

    async def _addressed(self, instance: InstanceOut) -> InstanceOut:
        """The instance with an address on each of its NICs on a ranged network (the same one
        again for a NIC that has one)."""
        nics = list(instance.nics)
        for index, nic in enumerate(nics):
            wanted = self.ranges.get(NetworkId(nic.network))
            if wanted is None:
                continue
            got = await self._allocate(instance.id, index, wanted)
            # The cluster manager's answer is the NIC as it now is: no need to read the
            # whole instance again.
            nics[index] = nic.model_copy(update={"ip": got.ip, "mac": got.mac})
        return instance.model_copy(update={"nics": nics})

    def _unaddressed(self, instance: InstanceOut) -> bool:
        return any(n.ip is None and NetworkId(n.network) in self.ranges for n in instance.nics)

    async def _republish(self, instance: InstanceOut) -> None:
        """The backend holds exactly the instance's entries: those of its NICs now published,
        those of NICs it no longer has withdrawn."""
        entries = self._entries(instance)
        indices = {e.nic_index for e in entries}
        held = [e for e in await self.backend.entries() if e.instance_id == instance.id]
        if any(e.nic_index not in indices for e in held):
            # The contract has no removal of one entry: all of the instance's go, and the
            # remaining ones are published again at once.
            await self.backend.withdraw(InstanceId(instance.id))
        if entries:
            await self.backend.publish(entries)

    def _entries(self, instance: InstanceOut) -> list[HostEntry]:
        domain = self.settings.dns_domain.strip(".")
        sub = instance.hints.get(SUBDOMAIN_HINT, "").strip(".")
        suffix = ".".join(part for part in (sub, domain) if part)
        found = []
        for index, nic in enumerate(instance.nics):
            if nic.ip is None or NetworkId(nic.network) not in self.ranges:
                continue
            name = hostname(instance.name, index)
            found.append(
                HostEntry(
                    instance_id=InstanceId(instance.id),
                    nic_index=index,
                    network_id=NetworkId(nic.network),
                    mac=nic.mac,
                    ip=nic.ip,
                    hostname=name,
                    fqdn=f"{name}.{suffix}" if suffix else name,
                )
            )
        return found

    async def _allocate(self, instance_id: int, index: int, wanted: str) -> NicAddressOut:
        try:
            return await self._api.allocate_address(instance_id, index, wanted)
        except TashiError as exc:
            # The scheduler holds the instance with this message: say whose call failed.
            raise type(exc)(f"DhcpDns: {exc}") from exc


def create(context: HookContext) -> InstanceHook:
    """The scheduler's entry point (``hook1 = DhcpDns``)."""
    settings, ranges = parse_options(context.options)
    if not ranges:
        raise InvalidInput("[DhcpDns] has no ipRange<networkId>: the hook would do nothing")
    api = ApiClient(http=context.http)  # the agent's connection: its address and token
    return DhcpDns(api, settings, ranges, create_backend(settings))
