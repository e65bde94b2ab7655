"""Turns a ``VmRequest`` into validated ``InstanceSpec``s: every check createVm makes.

Checks that need no database run first (names, limits, image names and files, MAC and IP
syntax, hints); those that do (networks exist, MACs unused) run inside the write transaction that
inserts the instances, so a concurrent request cannot slip between check and insert. The
database's unique constraints are the final guard against races.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from tashi.domain import validation
from tashi.domain.errors import AlreadyExists, InvalidInput, NotFound
from tashi.domain.ids import NetworkId
from tashi.domain.models import DiskConfig, InstanceSpec, NicConfig
from tashi.domain.operations import NicRequest, VmRequest
from tashi.images.store import ImageStore
from tashi.storage.contract import Transaction

_MAC_TRIES = 20


@dataclass(frozen=True, slots=True)
class SpecRules:
    limits: validation.Limits
    default_network: NetworkId
    images: ImageStore


def random_mac() -> str:
    """A MAC in QEMU's locally administered 52:54:00 range."""
    tail = secrets.token_bytes(3)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


def _nic(req: NicRequest, rules: SpecRules) -> NicConfig:
    network = rules.default_network if req.network is None else NetworkId(req.network)
    return NicConfig(
        network=network,
        mac=validation.mac(req.mac) if req.mac else "",
        ip=validation.ip_address(req.ip) if req.ip else None,
    )


def build_spec(request: VmRequest, name: str, rules: SpecRules) -> InstanceSpec:
    """Validate everything that needs no database. NICs without a MAC get one later."""
    if request.group_name is not None:
        validation.instance_name(request.group_name)
    disks = tuple(
        DiskConfig(uri=validation.image_name(d.uri), persistent=d.persistent or d.copy, copy=d.copy)
        for d in request.disks
    )
    if not disks:
        raise InvalidInput("an instance needs at least one disk (--disks IMAGE)")
    for disk in disks:
        rules.images.path_of(disk.uri)
    nic_requests = request.nics if request.nics is not None else (NicRequest(),)
    return InstanceSpec(
        name=validation.instance_name(name),
        cores=validation.cores(request.cores, rules.limits),
        memory=validation.memory(request.memory, rules.limits),
        cpu_share=validation.cpu_share(request.cpu_share),
        disks=disks,
        nics=tuple(_nic(n, rules) for n in nic_requests),
        hints={**validation.hints(request.hints), **_own(request.own_hints)},
        group_name=request.group_name,
    )


def _own(hints: Mapping[str, str]) -> dict[str, str]:
    """A front-end's own hints: every name must start with ``__`` (a user's never do)."""
    for key in hints:
        if not key.startswith("__"):
            raise ValueError(f"own hint {key!r} does not start with '__'")
    return dict(hints)


def many_names(basename: str, count: int) -> list[str]:
    """``basename-NN``, zero-padded to the width of ``count - 1`` as the original did."""
    width = len(str(count - 1))
    return [f"{basename}-{i:0{width}d}" for i in range(count)]


def settle_nics(tx: Transaction, specs: Sequence[InstanceSpec]) -> list[InstanceSpec]:
    """Inside the insert's transaction: networks must exist, given MACs must be free, and
    NICs without a MAC get a random unused one."""
    for net in {n.network for s in specs for n in s.nics}:
        try:
            tx.networks.get(net)
        except NotFound:
            raise NotFound(
                f"network {net} does not exist (see getNetworks; an admin adds networks)"
            ) from None
    given = [n.mac for s in specs for n in s.nics if n.mac]
    if len(set(given)) < len(given):
        raise InvalidInput("the same MAC address is given to two NICs")
    taken = tx.instances.macs_in_use(given)
    if taken:
        raise AlreadyExists(f"MAC address {sorted(taken)[0]} is already in use")
    fresh = iter(fresh_macs(tx, sum(1 for s in specs for n in s.nics if not n.mac), set(given)))
    return [
        replace(s, nics=tuple(n if n.mac else replace(n, mac=next(fresh)) for n in s.nics))
        for s in specs
    ]


def fresh_macs(tx: Transaction, count: int, used: set[str]) -> list[str]:
    """``count`` random MACs that no NIC has, checked against the store in few queries."""
    chosen: list[str] = []
    for _ in range(_MAC_TRIES):
        want = count - len(chosen)
        if want == 0:
            return chosen
        candidates = {random_mac() for _ in range(want)} - used
        taken = tx.instances.macs_in_use(sorted(candidates))
        for mac in sorted(candidates - taken)[:want]:
            used.add(mac)
            chosen.append(mac)
    if len(chosen) < count:
        raise AlreadyExists("could not find unused MAC addresses; give them with --nics")
    return chosen
