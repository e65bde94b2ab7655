"""The scheduler's sections: ``[Scheduler]`` (the agent loop, its policy and hooks) and
``[Primitive]`` (the original's names for the primitive policy); gathered in
``settings.Settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tashi.config.options import option


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    SECTION: ClassVar[str] = "Scheduler"
    DOC: ClassVar[str] = (
        "tashi-scheduler, the scheduling agent (SLA@SOI's section; it replaces [Primitive], whose"
        " options still work). It reaches the cluster manager at [Client] clusterManagerHost/"
        "clusterManagerPort as the [AccessClusterManager] user, of role agent. Hooks: hook1,"
        " hook2, ... = DhcpDns (or Recorder, the fake). See docs/scheduler.md."
    )
    OPEN_OPTIONS: ClassVar[str] = r"hook\d+"

    scheduler: str = option(
        "scheduler",
        "primitive",
        "Placement policy: primitive (the original), priority, balanced or consolidated"
        " (SLA@SOI; their class names tashi.scheduler.ConsolidatedScheduler etc. work too).",
    )
    schedule_delay: float = option(
        "scheduleDelay",
        2.0,
        "Seconds before a held instance (no host could take it) is tried again; the delay doubles"
        " with each failure up to maxHoldDelay, and resets when free capacity grows. New work is"
        " noticed at once through the cluster manager's change feed, not by polling.",
        minimum=0.01,
    )
    max_hold_delay: float = option(
        "maxHoldDelay", 60.0, "Longest delay between two tries of a held instance.", minimum=0.01
    )
    watch_timeout: float = option(
        "watchTimeout",
        25.0,
        "Seconds one long-poll of the change feed waits when nothing changes (then the agent"
        " reads the cluster anyway).",
        minimum=0.1,
        maximum=60,
    )
    concurrency: int = option(
        "concurrency", 8, "Activations the agent has in flight at once.", minimum=1
    )
    load_expression: str = option(
        "loadExpression",
        "memUsage + coresUsage * 512 + cpuUsage",
        "SLA@SOI: a host's load for priority/balanced/consolidated, over memUsage (MB used),"
        " coresUsage, cpuUsage (reported load), memory, cores, freeMemory, freeCores, cpuSpeed"
        " and instances, with + - * / // % and parentheses (checked at start; never eval'd).",
    )
    cpu_cores_over_rate: float = option(
        "cpuCoresOverRate",
        0.0,
        "Cores over-commit the scheduler plans with (1: none). 0: the cluster manager's"
        " [ClusterManagerService] cpuCoresOverRate, which its claims enforce anyway.",
        minimum=0,
    )
    memory_over_rate: float = option(
        "memoryOverRate",
        0.0,
        "Memory over-commit the scheduler plans with. 0: [ClusterManagerService] memoryOverRate.",
        minimum=0,
    )
    cpu_speed_over_rate: float = option(
        "cpuSpeedOverRate",
        1.0,
        "SLA@SOI policies: a host's cores x cpuSpeed x this rate bounds the sum of its VMs'"
        " cores x cpuSpeed x cpuShare/1024 (hosts that report no cpuSpeed are not bounded).",
        minimum=0.01,
    )
    minimal_vm_memory: int = option(
        "minimalVmMemory",
        0,
        "MB a VM is counted as at least, when capacity is planned (SLA@SOI; 0: its memory).",
        minimum=0,
    )
    optimal_consolidation: bool = option(
        "optimalConsolidation",
        False,
        "consolidated: place larger VMs first within a priority (first-fit decreasing).",
    )
    reschedule_after_start: bool = option(
        "rescheduleAfterStart",
        False,
        "balanced: when nothing waits, live-migrate one VM per round from the most to the least"
        " loaded host if that narrows the gap.",
    )
    auto_migrations: bool = option(
        "autoMigrations",
        False,
        "consolidated: when nothing waits, live-migrate the VMs of the least loaded host onto"
        " busier hosts when they all fit, so that it can be freed.",
    )
    high_priority: int = option(
        "highPriority",
        1,
        "Users with at least this priority (registerUser --priority) get the best [Servers]"
        " first; the others the worst first.",
    )


@dataclass(frozen=True, slots=True)
class PrimitiveSettings:
    SECTION: ClassVar[str] = "Primitive"
    DOC: ClassVar[str] = (
        "The original scheduler's section, still read: densePack for the primitive policy, and"
        " hook1, hook2, ... (added after [Scheduler]'s)."
    )
    OPEN_OPTIONS: ClassVar[str] = r"hook\d+"

    dense_pack: bool = option(
        "densePack",
        False,
        "primitive: put a VM on the usable host with the most VMs that fits it (default: the"
        " fewest). The hint densePack overrides it per VM.",
    )
    schedule_delay: float = option(
        "scheduleDelay",
        0.0,
        "The original's name for [Scheduler] scheduleDelay; used when above 0.",
        minimum=0,
    )
