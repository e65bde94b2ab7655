"""Crafted snapshots for the policy tests."""

from __future__ import annotations

import random
from types import MappingProxyType

from tashi.scheduler.snapshot import HostView, Request, Snapshot


def host(
    hid: int,
    *,
    memory: int = 4096,
    cores: int = 4,
    used_memory: int = 0,
    used_cores: int = 0,
    instances: int = 0,
    up: bool = True,
    state: str = "Normal",
    reserved: tuple[int, ...] = (),
    load: float | None = None,
    cpu_speed: int = 0,
) -> HostView:
    return HostView(
        id=hid,
        name=f"h{hid}",
        up=up,
        state=state,
        memory=memory,
        cores=cores,
        cpu_speed=cpu_speed,
        load=load,
        reserved=frozenset(reserved),
        used_memory=used_memory,
        used_cores=used_cores,
        instances=instances,
    )


def request(
    iid: int,
    *,
    memory: int = 512,
    cores: int = 1,
    user: int = 1,
    priority: int = 0,
    hints: dict[str, str] | None = None,
    persistent: str | None = None,
    state: str = "Pending",
) -> Request:
    return Request(
        id=iid,
        name=f"vm{iid}",
        user_id=user,
        memory=memory,
        cores=cores,
        state=state,
        priority=priority,
        hints=MappingProxyType(dict(hints or {})),
        persistent_disk=persistent,
    )


def random_cluster(rng: random.Random, hosts: int, pending: int) -> Snapshot:
    views = []
    for i in range(1, hosts + 1):
        memory, cores = rng.choice([(2048, 2), (4096, 4), (8192, 8)])
        n = rng.randint(0, 3)
        used_m, used_c = min(memory, n * 512), min(cores, n)
        views.append(
            host(
                i,
                memory=memory,
                cores=cores,
                used_memory=used_m,
                used_cores=used_c,
                instances=n,
                up=rng.random() > 0.1,
                state="Normal" if rng.random() > 0.1 else "Drained",
                reserved=(2,) if rng.random() < 0.1 else (),
                load=rng.random() * 4,
            )
        )
    reqs = tuple(
        request(
            i,
            memory=rng.choice([128, 512, 1024, 3000]),
            cores=rng.choice([1, 1, 2, 3]),
            user=rng.choice([1, 2, 3]),
            priority=rng.choice([0, 0, 5]),
        )
        for i in range(1, pending + 1)
    )
    return Snapshot(hosts=tuple(views), pending=reqs)
