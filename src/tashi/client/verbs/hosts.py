"""Verbs that show hosts and capacity: getHosts, getVmLayout, getSlots.

``getVmLayout`` and ``getSlots`` are computed in the client from getHosts and getInstances, as in
the original (``layout.py``). A user who is not an admin sees only their own instances, so for
them the used columns count only their VMs; the verbs say so on stderr. Host administration
(setHostState, reservations, …) is in ``hostadmin.py``.
"""

from __future__ import annotations

from dataclasses import asdict

from tashi.api.schemas import HostOut
from tashi.client import parsing
from tashi.client.layout import LayoutRow, layout, slots, slots_sentence
from tashi.client.tables import TableSpec, attributes
from tashi.client.verbs.base import (
    PAGE_OPTIONS,
    Args,
    Context,
    Option,
    Output,
    Verb,
    dump,
    listed,
    table_output,
)

HOST_TABLE: TableSpec[HostOut] = TableSpec(
    columns=attributes(
        *("id", "name", "up", "state", "memory", "cores", "version", "notes", "reserved"),
        *("decayed", "cpuSpeed", "config", "lastHeartbeat", "confirmed", "load"),
    ),
    default=("id", "name", "up", "state", "memory", "cores", "version", "notes", "reserved"),
)
LAYOUT_TABLE: TableSpec[LayoutRow] = TableSpec(
    columns=attributes(
        *("id", "name", "state", "instances", "usedMemory", "memory", "usedCores", "cores"),
        "up",
    ),
    default=("id", "name", "state", "instances", "usedMemory", "memory", "usedCores", "cores"),
)

#: roles that see every instance (``Principal.is_trusted`` on the server)
TRUSTED_ROLES = ("admin", "agent", "node")
_PARTIAL = (
    "note: you see only your own instances, so the used columns and slots count only those;"
    " an admin sees the whole cluster"
)


def get_hosts(ctx: Context, args: Args) -> Output:
    hosts = listed(args, ctx.client.get_hosts, ctx.client.all_hosts)
    return table_output(HOST_TABLE, hosts, args, dump(hosts))


def _layout(ctx: Context) -> tuple[list[LayoutRow], tuple[str, ...]]:
    rows = layout(ctx.client.all_hosts(), ctx.client.all_instances())
    partial = ctx.client.whoami().role not in TRUSTED_ROLES
    return rows, (_PARTIAL,) if partial else ()


def get_vm_layout(ctx: Context, args: Args) -> Output:
    rows, notes = _layout(ctx)
    out = table_output(LAYOUT_TABLE, rows, args, [asdict(row) for row in rows])
    return Output(raw=out.raw, text=out.text, notes=notes)


def get_slots(ctx: Context, args: Args) -> Output:
    rows, notes = _layout(ctx)
    cores, memory = args["cores"], args["memory"]
    count = slots(rows, cores, memory)
    raw = {"slots": count, "cores": cores, "memory": memory}
    return Output(raw=raw, text=slots_sentence(count, cores, memory), notes=notes)


VERBS = (
    Verb(
        "getHosts",
        "hosts",
        "List the hosts.",
        get_hosts,
        PAGE_OPTIONS,
        description="List the hosts that run (or ran) a node manager. The default columns are"
        " id name up state memory cores version notes reserved; decayed, cpuSpeed, config,"
        " lastHeartbeat and load can be added with --show-<col>. Every host is shown, read"
        " from the cluster manager in pages; --limit and --after show one page.",
        examples=(
            "tashi getHosts",
            "tashi getHosts --show-config --show-lastHeartbeat",
            "tashi getHosts --show-all",
            "tashi getHosts --limit 500 --after 1000",
        ),
        table=HOST_TABLE,
    ),
    Verb(
        "getVmLayout",
        "hosts",
        "Show which instances run on which host, and what they use.",
        get_vm_layout,
        description="One row per host: id name state instances usedMemory memory usedCores"
        " cores, where instances are the names of the VMs placed on the host and the used"
        " columns add up their memory (MB) and cores.",
        examples=("tashi getVmLayout", "tashi getVmLayout --show-up --hide-instances"),
        table=LAYOUT_TABLE,
    ),
    Verb(
        "getSlots",
        "hosts",
        "Count how many more VMs of a given size fit in the cluster.",
        get_slots,
        (
            Option("cores", "Cores of one VM.", parsing.parse_count, default=1, metavar="N"),
            Option(
                "memory", "Memory of one VM in MB.", parsing.parse_count, default=128, metavar="MB"
            ),
        ),
        description="Sum over the hosts that are up and Normal of how many VMs of that size"
        " still fit in their free cores and memory. Reservations are not taken into account.",
        examples=("tashi getSlots", "tashi getSlots --cores 2 --memory 1024"),
    ),
)
