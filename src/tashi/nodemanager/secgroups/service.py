"""``FirewallService``: the security groups of the VMs this node manager runs, enforced on their
taps, and the policy the cluster manager sends (``nodeapi/firewall.py``).

The node service calls it around each VM, as it calls the metadata service (the contract:
``tashi.nodemanager.collaborators.TapFirewall``): ``attach`` once the VM's taps exist and before its
guest runs (a start, a restore, the target of a live migration), ``detach`` when the VM has
gone, ``restore`` once after a restart with the VMs it adopted. A VM is guarded when it is in
groups (``secgroups.groups_of`` its hints); one in none is left alone, as before security
groups. The cluster manager calls ``update`` with the whole policy of this host's groups; what
each guarded tap lets in follows at once (``rules.update``: one transaction).

The policy is kept in the state directory (``security-groups.json``), so a restarted node
manager guards the VMs it adopts with the last policy it was sent, in one transaction with
nothing stale left (``rules.reset``), before the cluster manager has said anything. A group
the policy does not know yet has chains with no rules: its members let in and out replies only
until the policy comes (closed, never open). That is how a VM starts when its host's policy is
on its way (the cluster manager sends it beside the start, ``docs/adr/0019-security-groups.md``).

Guarding is a condition of running a VM in groups: a host whose kernel refused (``start``
logged why) or a NIC the driver did not make (a tap an ``ifup`` script makes is QEMU's) fails
the VM's start with ``BackendFailure``, and a VM in no group starts as ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from tashi.domain import firewall
from tashi.domain.errors import BackendFailure, InvalidInput, TashiError
from tashi.domain.firewall import Policy
from tashi.domain.ids import InstanceId
from tashi.domain.models import Instance
from tashi.domain.secgroups import groups_of
from tashi.network.base import Attachment
from tashi.nodemanager.secgroups import rules
from tashi.nodemanager.secgroups.plumbing import Plumbing
from tashi.nodemanager.secgroups.rules import Port

log = logging.getLogger(__name__)

STATE_FILE = "security-groups.json"


class FirewallService:
    def __init__(self, plumbing: Plumbing | None, state_dir: Path) -> None:
        """``plumbing`` ``None``: a network driver that makes no taps (nothing to guard)."""
        self._plumbing = plumbing
        self._file = state_dir / STATE_FILE
        self._policy = Policy()
        self._ports: dict[InstanceId, list[Port]] = {}
        self._chains: set[str] = set()  # the group keys that have a chain in the kernel
        self._lock = asyncio.Lock()
        self.enforcing = False

    @property
    def version(self) -> str:
        """The version of the policy this node enforces."""
        return self._policy.version

    def ports(self) -> dict[InstanceId, list[Port]]:
        """The guarded NICs by instance (for tests and logs)."""
        return {iid: list(ports) for iid, ports in self._ports.items()}

    async def start(self) -> None:
        """Read the last policy; make the kernel side, or log why security groups are not
        enforced here (VMs in groups then do not start on this host)."""
        self._policy = await asyncio.to_thread(_read, self._file)
        if self._plumbing is None:
            return
        try:
            await self._plumbing.prepare()
        except TashiError as exc:
            log.error(
                "security groups are not enforced on this host, so VMs in groups will not start"
                " here: %s",
                exc.message,
            )
            return
        self.enforcing = True

    async def attach(self, instance: Instance, taps: Sequence[Attachment]) -> None:
        """Guard the instance's NICs if it is in groups (``BackendFailure`` if they cannot be);
        taps guarded already are left as they are (a NIC hot-plugged later adds its own)."""
        keys = tuple(firewall.key(instance.user_id, g) for g in groups_of(instance.hints))
        if not keys or self._plumbing is None:
            return
        if not self.enforcing:
            raise BackendFailure("this host cannot enforce security groups (its log says why)")
        if len(taps) < len(instance.nics):
            raise BackendFailure(
                "security groups are enforced only on taps the network driver makes, and a NIC"
                " of this instance is on a network an ifup script serves"
            )
        async with self._lock:
            had = self._ports.get(instance.id, [])
            guarded = {p.tap for p in had}
            ports = [_port(instance, tap, keys) for tap in taps if tap.tap not in guarded]
            if not ports:
                return
            new = {k for k in keys if k not in self._chains and rules.group_chain(k)}
            script = "\n".join(
                rules.add_port(self._policy, p, new if i == 0 else ()) for i, p in enumerate(ports)
            )
            await self._plumbing.load(script, f"guarding the taps of instance {instance.id}")
            self._chains |= new
            self._ports[instance.id] = [*had, *ports]

    async def detach(self, instance_id: InstanceId) -> None:
        """Stop guarding the instance (its VM has gone). Never raises."""
        if self._plumbing is None:
            return
        async with self._lock:
            ports = self._ports.pop(instance_id, None)
            if not ports:
                return
            kept = rules.needed(self._policy, [p for ps in self._ports.values() for p in ps])
            gone = self._chains - kept
            script = "\n".join(
                rules.remove_port(p, gone if i == 0 else ()) for i, p in enumerate(ports)
            )
            try:
                await self._plumbing.load(script, f"unguarding the taps of instance {instance_id}")
            except TashiError as exc:
                log.warning("instance %s: its security-group chains: %s", instance_id, exc.message)
            self._chains = kept

    async def restore(self, vms: Sequence[tuple[Instance, Sequence[Attachment]]]) -> None:
        """After a restart: guard exactly these VMs (stale chains go in the same step)."""
        if self._plumbing is None or not self.enforcing:
            return
        async with self._lock:
            self._ports = {}
            for instance, taps in vms:
                keys = tuple(firewall.key(instance.user_id, g) for g in groups_of(instance.hints))
                if keys and taps:
                    self._ports[instance.id] = [_port(instance, tap, keys) for tap in taps]
            ports = [p for ps in self._ports.values() for p in ps]
            try:
                await self._plumbing.load(rules.reset(self._policy, ports), "restoring guards")
            except TashiError as exc:  # the kernel keeps what the node manager before made
                log.error("the security-group rules could not be restored: %s", exc.message)
                return
            self._chains = rules.needed(self._policy, ports)

    async def update(self, policy: Policy) -> str:
        """Enforce ``policy`` from now on (idempotent); the version enforced.
        ``InvalidInput`` for a policy no rule can be made of."""
        _check(policy)
        async with self._lock:
            if policy.version == self._policy.version:
                return self.version
            if self._plumbing is not None and self.enforcing:
                ports = [p for ps in self._ports.values() for p in ps]
                keys = rules.needed(policy, ports)
                script = rules.update(policy, keys, self._chains - keys)
                await self._plumbing.load(
                    script, f"enforcing security-group policy {policy.version}"
                )
                self._chains = keys
            await asyncio.to_thread(_write, self._file, policy)
            self._policy = policy
            log.info("security-group policy %s (%d groups)", policy.version, len(policy.groups))
            return self.version

    async def close(self) -> None:
        if self._plumbing is not None:
            await self._plumbing.close()


def _port(instance: Instance, tap: Attachment, keys: tuple[str, ...]) -> Port:
    nics = instance.nics
    address = nics[tap.nic_index].ip if tap.nic_index < len(nics) else None
    return Port(int(instance.id), tap.nic_index, tap.tap, tap.mac, address, keys)


def _check(policy: Policy) -> None:
    try:
        for allows in policy.groups.values():
            rules.allows(allows)
        for allows in policy.egress.values():
            rules.allows(allows, egress=True)
    except ValueError as exc:
        raise InvalidInput(f"a security-group policy no rule can be made of: {exc}") from None


def _read(path: Path) -> Policy:
    try:
        data = json.loads(path.read_text())
        return firewall.from_data(data["groups"], data.get("egress"))
    except FileNotFoundError:
        return Policy()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s could not be read (%s): no policy until the cluster manager's", path, exc)
        return Policy()


def _write(path: Path, policy: Policy) -> None:
    """The policy, replaced whole (a crash leaves the old one or the new one)."""
    temporary = path.with_name(f".{path.name}.tmp")
    data = {
        "version": policy.version,
        "groups": firewall.as_data(policy),
        "egress": firewall.as_data(policy, egress=True),
    }
    try:
        temporary.write_text(json.dumps(data, sort_keys=True))
        os.replace(temporary, path)
    except OSError as exc:
        raise BackendFailure(f"cannot keep the security-group policy in {path}: {exc}") from exc
