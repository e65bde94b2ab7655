"""One measurement window of ``python -m bench scale``: what one user sees while hosts beat.

A single client (the admin's ``TashiClient``, in the benchmark's process, not the hollow
hosts') goes round the same calls again and again until the window ends, each timed on its
own: ``createVm`` (a Pending instance: nothing is placed, no scheduler runs), ``getInstance``
of one Pending instance, ``getHost`` of one host, ``getInstances`` of one page (100), the
whole ``getHosts`` list (it has no pages yet), ``destroyVm`` of the instance it created; and,
every ``GROUP_EVERY`` rounds, ``activateGroup`` of a new group of ``GROUP`` VMs of the fill
user (who owns every hollow VM) on random hollow hosts, whose members are destroyed again.
The same objects are asked at every step, so a ratio to the empty cluster's figure is the
cost of the hosts alone. Every ``getHosts`` answer also says which hollow hosts were down.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.cluster import IMAGE
from tashi.api.schemas import CreateManyIn, DiskIn, InstanceIn
from tashi.client.sdk import TashiClient
from tashi.domain.errors import TashiError

T = TypeVar("T")

GROUP = 3  # members of the timed activateGroup
GROUP_EVERY = 5  # rounds between two timed activateGroup calls
PAUSE = 0.1  # seconds between rounds: one user, not a load test
VM_MEMORY = 64
GROUP_CALL = "activateGroup"
CALLS = ("getInstance", "createVm", "destroyVm", "getHost", "getInstances 100", "getHosts all")


@dataclass(frozen=True, slots=True)
class Targets:
    """The objects the window asks about."""

    instance: int  # a Pending instance (getInstance)
    host: int  # a host (getHost)
    hosts: tuple[int, ...]  # the hollow hosts (the timed group's members go there)
    owner: int  # the fill user (the group's owner)


@dataclass(slots=True)
class WindowResult:
    """Each call's latencies (seconds), the hollow hosts seen down, the errors."""

    times: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CALLS})
    down_hosts: set[int] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        return {
            **{call: percentiles(self.times[call]) for call in CALLS},
            "errors": dict(self.errors),
        }

    def group_summary(self) -> dict[str, float]:
        return percentiles(self.times.get(GROUP_CALL, []))


def percentiles(values: list[float]) -> dict[str, float]:
    """count, p50, p99 and max of ``values`` (nan when there are none)."""
    if not values:
        return {"count": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"count": len(ordered), "p50": at(0.50), "p99": at(0.99), "max": ordered[-1]}


def run_window(admin: TashiClient, targets: Targets, seconds: float) -> WindowResult:
    result = WindowResult()
    prefix = f"probe{secrets.token_hex(3)}"
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        _round(admin, targets, result, f"{prefix}-{rounds}")
        if targets.hosts and rounds % GROUP_EVERY == 1:
            _group(admin, targets, result, f"{prefix}g{rounds}")
        time.sleep(PAUSE)  # pacing of one user between rounds, not a wait for a condition
    return result


def _timed(result: WindowResult, call: str, do: Callable[[], T]) -> T | None:
    started = time.perf_counter()
    try:
        answer = do()
    except TashiError as exc:
        result.errors[f"{call}: {type(exc).__name__}"] += 1
        return None
    result.times.setdefault(call, []).append(time.perf_counter() - started)
    return answer


def _round(admin: TashiClient, targets: Targets, result: WindowResult, name: str) -> None:
    made = _timed(
        result,
        "createVm",
        lambda: admin.create_vm(InstanceIn(name=name, disks=[DiskIn(uri=IMAGE)])),
    )
    _timed(result, "getInstance", lambda: admin.get_instance(targets.instance))
    _timed(result, "getHost", lambda: admin.get_host(targets.host))
    _timed(result, "getInstances 100", lambda: admin.get_instances(limit=100))
    hosts = _timed(result, "getHosts all", admin.get_hosts)
    if hosts is not None:
        mine = set(targets.hosts)
        result.down_hosts.update(h.id for h in hosts if h.id in mine and not h.up)
    if made is not None:
        _timed(result, "destroyVm", lambda: admin.destroy_vm(made.id))


def _group(admin: TashiClient, targets: Targets, result: WindowResult, name: str) -> None:
    """Time ``activateGroup`` of a new group of the fill user; destroy its members again."""
    try:
        made = admin.create_many(
            CreateManyIn(
                basename=name,
                count=GROUP,
                memory=VM_MEMORY,
                disks=[DiskIn(uri=IMAGE)],
                groupName=name,
                userId=targets.owner,
            )
        )
    except TashiError as exc:
        result.errors[f"createMany: {type(exc).__name__}"] += 1
        return
    hosts = random.sample(targets.hosts, GROUP) if len(targets.hosts) >= GROUP else []
    hosts = hosts or [random.choice(targets.hosts) for _ in range(GROUP)]
    placements: list[tuple[str | int, str | int]] = [
        (i.id, h) for i, h in zip(made, hosts, strict=True)
    ]
    _timed(result, GROUP_CALL, lambda: admin.activate_group(placements))
    for instance in made:
        try:
            admin.destroy_vm(instance.id)
        except TashiError as exc:
            result.errors[f"destroy group member: {type(exc).__name__}"] += 1
