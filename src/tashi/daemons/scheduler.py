"""``tashi-scheduler``: the scheduling agent. Places Pending and Held instances until SIGTERM.

Configuration: the Agent program's files (``Agent.cfg``; see ``tashi.config.loader``):
``[Scheduler]``/``[Primitive]`` for the policy and hooks, ``[Servers]`` for SLA@SOI server
ratings, ``[Client] clusterManagerHost/clusterManagerPort`` for the cluster manager, and
``[AccessClusterManager]`` for the credentials of a user of role ``agent``, made once by an
admin: ``tashi registerUser --name scheduler --passwd '…' --role agent``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from types import MappingProxyType

import tashi
from tashi.config import ConfigError
from tashi.config.loader import RawConfig, load_raw, parse_settings
from tashi.config.settings import Settings
from tashi.domain.errors import InvalidInput, TashiError
from tashi.runtime import logs
from tashi.runtime.tasks import Supervisor
from tashi.scheduler import hookload
from tashi.scheduler.agent import Agent, AgentOptions
from tashi.scheduler.cmclient import CmClient
from tashi.scheduler.hooks import HookContext
from tashi.scheduler.loadexpr import LoadExpression
from tashi.scheduler.policies import registry
from tashi.scheduler.policies.base import PolicyOptions
from tashi.scheduler.snapshot import Limits

log = logging.getLogger("tashi.scheduler")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tashi-scheduler",
        description="The Tashi scheduling agent: places Pending and Held instances on hosts.",
        epilog="Configuration: TashiDefaults.cfg, Tashi.cfg, AgentDefaults.cfg and Agent.cfg in"
        " ./etc/, /usr/share/tashi/, /etc/tashi/ and ~/.tashi/, then TASHI_CONFIG. Credentials:"
        " [AccessClusterManager] username/password of a user of role agent. See"
        " docs/scheduler.md.",
    )
    parser.add_argument(
        "--version", action="version", version=f"tashi-scheduler {tashi.__version__}"
    )
    return parser


def servers(raw: RawConfig) -> dict[int, int]:
    """``[Servers] hostId = priority`` (SLA@SOI)."""
    out: dict[int, int] = {}
    for option, (value, source) in raw.section("Servers").items():
        try:
            out[int(option)] = int(value)
        except ValueError:
            raise ConfigError(
                f"{source}: [Servers] {option} = {value!r}: expected hostId = priority (numbers)"
            ) from None
    return out


def policy_options(settings: Settings, raw: RawConfig) -> PolicyOptions:
    sched, service = settings.scheduler, settings.cluster_manager_service
    try:
        LoadExpression(sched.load_expression)
    except InvalidInput as exc:
        raise ConfigError(f"[Scheduler] {exc.message}") from None
    limits = Limits(
        cores_over_rate=sched.cpu_cores_over_rate or service.cpu_cores_over_rate,
        memory_over_rate=sched.memory_over_rate or service.memory_over_rate,
        cpu_speed_over_rate=sched.cpu_speed_over_rate,
        minimal_vm_memory=sched.minimal_vm_memory,
        check_cpu_speed=registry.canonical(sched.scheduler) != "primitive",
    )
    return PolicyOptions(
        dense_pack=settings.primitive.dense_pack,
        limits=limits,
        load_expression=sched.load_expression,
        servers=MappingProxyType(servers(raw)),
        high_priority=sched.high_priority,
        optimal_consolidation=sched.optimal_consolidation,
        reschedule_after_start=sched.reschedule_after_start,
        auto_migrations=sched.auto_migrations,
    )


def agent_options(settings: Settings) -> AgentOptions:
    sched = settings.scheduler
    return AgentOptions(
        schedule_delay=settings.primitive.schedule_delay or sched.schedule_delay,
        max_hold_delay=sched.max_hold_delay,
        watch_timeout=sched.watch_timeout,
        concurrency=sched.concurrency,
    )


def hook_names(raw: RawConfig) -> list[str]:
    names: list[str] = []
    for section in ("Scheduler", "Primitive"):
        values: Mapping[str, str] = {k: v for k, (v, _) in raw.section(section).items()}
        names += [n for n in hookload.hook_names(values) if n not in names]
    return names


def client_of(settings: Settings) -> CmClient:
    access, where = settings.access_cluster_manager, settings.client
    if not access.token and not (access.username and access.password):
        raise TashiError(
            "no credentials for the cluster manager: set [AccessClusterManager] username and"
            " password (a user of role agent) in Agent.cfg"
        )
    return CmClient(
        f"http://{where.cluster_manager_host}:{where.cluster_manager_port}",
        username=access.username,
        password=access.password,
        token=access.token,
        timeout=where.cluster_manager_timeout,
    )


async def run(settings: Settings, raw: RawConfig) -> None:
    options = policy_options(settings, raw)
    policy = registry.create(settings.scheduler.scheduler, options)
    client = client_of(settings)

    def context(section: str) -> HookContext:
        return HookContext(client.http, {k: v for k, (v, _) in raw.section(section).items()})

    try:
        hooks = hookload.load(hook_names(raw), context)
        agent = Agent(client, policy, hooks, agent_options(settings))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        supervisor = Supervisor()
        supervisor.every("schedule", settings.scheduler.schedule_delay, agent.run_forever)
        log.info(
            "tashi-scheduler %s: policy %s, hooks %s, cluster manager %s",
            tashi.__version__,
            policy.name,
            [h.name for h in hooks] or "none",
            client.base_url,
        )
        await stop.wait()
        log.info("stopping")
        await supervisor.stop()
        await agent.close()
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    _parser().parse_args(argv)
    try:
        raw = load_raw("Agent")
        settings = parse_settings(raw)
        registry.create(settings.scheduler.scheduler, policy_options(settings, raw))
    except InvalidInput as exc:
        print(f"tashi-scheduler: configuration error: {exc.message}", file=sys.stderr)
        return 2
    logs.setup(settings.logging.level, as_json=settings.logging.json, program="tashi-scheduler")
    os.umask(0o077)
    try:
        asyncio.run(run(settings, raw))
    except KeyboardInterrupt:
        return 0
    except (TashiError, OSError) as exc:
        print(f"tashi-scheduler: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
