"""The fill of ``python -m bench scale``: the VMs of each new host, started by the cluster
manager on it through the public API, as a scheduler places them.

A **fill group** is ``fill_hosts`` new hosts (``--fill-group-hosts``): one ``createMany`` of
``vms_per_host`` instances for each of them (one group of the fill user), then one
``activateGroup`` placing each host's share of the members on it. The cluster manager writes
the placement of a whole group in one transaction, then calls ``POST /v1/vms`` on each member's
host, all at once, and writes each member Running as its host answers: a larger group spreads
that one transaction over more VMs, but opens more connections to the hosts at once, and a
single member whose start fails (a connect over 3 s on a busy machine) tears the whole group
down. ``fill_concurrency`` groups (``--fill-concurrency``) are under way at once, each from a
thread of the benchmark. A group whose start failed (its members are Held) is activated again,
up to ``TRIES`` times in all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.cluster import IMAGE
from tashi.api.schemas import CreateManyIn, DiskIn
from tashi.client.sdk import TashiClient
from tashi.domain.errors import TashiError

TRIES = 3
MIN_SECONDS = 120.0  # a fill gives up on the groups not begun by then ...
SECONDS_PER_HOST = 0.5  # ... or by this much a host, whichever is longer
VM_MEMORY = 64  # MB of each hollow VM


@dataclass(frozen=True, slots=True)
class Fill:
    """What a fill did: seconds taken, VMs that never started, why the first of them did not."""

    seconds: float
    unstarted: int
    why: str | None


def fill(
    admin: TashiClient,
    owner: int,
    hosts: Sequence[int],
    *,
    tag: str,
    vms_per_host: int,
    group_hosts: int,
    concurrency: int,
) -> Fill:
    """Start ``vms_per_host`` VMs of ``owner`` on each of ``hosts``; ``tag`` names the groups."""
    started = time.monotonic()
    deadline = started + max(MIN_SECONDS, SECONDS_PER_HOST * len(hosts))
    groups = [list(hosts[i : i + group_hosts]) for i in range(0, len(hosts), group_hosts)]

    def one(group: list[int]) -> str | None:
        if time.monotonic() > deadline:
            return "the fill ran out of time (the cluster manager is overloaded)"
        return _group(admin, owner, group, f"fill{tag}h{group[0]}", vms_per_host)

    pool = ThreadPoolExecutor(concurrency)
    try:
        outcomes = list(pool.map(one, groups))
    finally:  # on Ctrl-C too: the groups not begun are dropped, those begun end by timeout
        pool.shutdown(wait=True, cancel_futures=True)
    failed = [(group, why) for group, why in zip(groups, outcomes, strict=True) if why is not None]
    unstarted = sum(len(group) for group, _ in failed) * vms_per_host
    return Fill(time.monotonic() - started, unstarted, failed[0][1] if failed else None)


def _group(
    admin: TashiClient, owner: int, hosts: list[int], name: str, vms_per_host: int
) -> str | None:
    """One fill group; ``None``, or why its VMs could not be started."""
    try:
        made = admin.create_many(
            CreateManyIn(
                basename=name,
                count=vms_per_host * len(hosts),
                memory=VM_MEMORY,
                disks=[DiskIn(uri=IMAGE)],
                groupName=name,
                userId=owner,
            )
        )
    except TashiError as exc:
        return exc.message
    placements: list[tuple[str | int, str | int]] = [
        (inst.id, hosts[index // vms_per_host]) for index, inst in enumerate(made)
    ]
    why = None
    for _try in range(TRIES):
        try:
            admin.activate_group(placements)
        except TashiError as exc:
            why = exc.message
            continue
        return None
    return why
