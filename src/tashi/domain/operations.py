"""What callers ask for, before validation: the inputs of the cluster manager's operations.

Front-ends (REST today, EC2/OCCI later) only turn their protocol into these and call one service
method; the services validate them into domain records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class DiskRequest:
    uri: str
    persistent: bool = False
    copy: bool = False  # SLA@SOI: the VM's own persistent copy of the template ``uri``


@dataclass(frozen=True, slots=True)
class NicRequest:
    network: int | None = None  # None: the default network
    ip: str | None = None
    mac: str | None = None  # None: a random unused one


@dataclass(frozen=True, slots=True)
class VmRequest:
    """``createVm`` (and, with ``name`` as the base name, ``createMany``)."""

    name: str
    disks: Sequence[DiskRequest]
    cores: int = 1
    memory: int = 128
    cpu_share: int = 1024
    nics: Sequence[NicRequest] | None = None  # None: one NIC on the default network
    hints: Mapping[str, str] = field(default_factory=dict)
    group_name: str | None = None
    user_id: int | None = None  # owner; only an admin may name someone else
    #: hints Tashi keeps itself (names starting ``__``), set by a front-end and never by its
    #: caller: what the EC2 API launched an instance with (``domain/launches.py``)
    own_hints: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """``getInstances`` filters; references are ids or names, states are names."""

    user: str | None = None
    state: str | None = None
    states: tuple[str, ...] | None = None  # any of them (and ``state``, when both are given)
    ids: tuple[int, ...] | None = None  # only these instances
    host: str | None = None
    name: str | None = None
    name_prefix: str | None = None
    after_id: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class BatchSelect:
    """The instances a batch verb acts on: ``basename-<digits>`` names, or explicit ids."""

    basename: str | None = None
    ids: Sequence[int] | None = None
