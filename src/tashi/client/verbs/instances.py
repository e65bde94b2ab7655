"""Verbs that create and list instances: createVm, createMany, getInstances, getMyInstances.

The instance table has the original columns ``id hostId name user state disk memory cores``
(``disk`` is the first disk's image, ``:True`` when persistent, ``:copy`` while its own copy of
that template is still to be made); every other field of
``InstanceOut`` can be added with ``--show-<col>``. A state the instance's host has not confirmed
since the cluster manager started reads ``Running (unconfirmed)``; ``--show-lastReport`` says
when the host last reported. The lifecycle verbs are in ``lifecycle.py``.
"""

from __future__ import annotations

import sys
from typing import Any

from tashi.api.schemas import CreateManyIn, InstanceIn, InstanceOut, NicIn
from tashi.apiclient.client import InstanceFilters
from tashi.client import parsing
from tashi.client.errors import UsageError
from tashi.client.tables import Column, TableSpec, attributes
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
from tashi.client.waiting import wait_running
from tashi.domain.errors import Forbidden, NotAuthenticated


def _disk(inst: InstanceOut) -> str | None:
    return _disks(inst)[0] if inst.disks else None


def _nics(inst: InstanceOut) -> list[str]:
    return [f"{n.network}:{n.ip or ''}:{n.mac}" for n in inst.nics]


def _disks(inst: InstanceOut) -> list[str]:
    return [
        f"{d.uri}:copy" if d.copy_ else f"{d.uri}:True" if d.persistent else d.uri
        for d in inst.disks
    ]


def _state(inst: InstanceOut) -> str:
    return inst.state if inst.confirmed else f"{inst.state} (unconfirmed)"


INSTANCE_TABLE: TableSpec[InstanceOut] = TableSpec(
    columns=(
        *attributes("id", "hostId", "name", "user"),
        Column("state", _state),
        Column("disk", _disk),
        *attributes("memory", "cores", "userId", "vmId", "cpuShare"),
        Column("disks", _disks),
        Column("nics", _nics),
        *attributes("hints", "groupName", "reason", "createdAt", "stateSince", "lastReport"),
    ),
    default=("id", "hostId", "name", "user", "state", "disk", "memory", "cores"),
)


def instances_output(instances: list[InstanceOut], args: Args) -> Output:
    return table_output(INSTANCE_TABLE, instances, args, dump(instances))


# --- createVm and createMany -------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise UsageError(f"{text} is not a positive number of seconds")
    return value


SPEC_OPTIONS = (
    Option("cores", "Virtual CPUs.", parsing.parse_int, default=1, metavar="N"),
    Option("memory", "Memory in MB.", parsing.parse_int, default=128, metavar="MB"),
    Option(
        "cpuShare",
        "Relative CPU weight against other VMs on the host (cgroup cpu.shares).",
        parsing.parse_int,
        default=1024,
        metavar="N",
    ),
    Option(
        "disks",
        "Comma list of images of the image store; ':True' keeps changes (persistent),"
        " ':copy' gives the VM its own persistent copy of the image (made when it first"
        " starts, state PreparingDisk), otherwise the VM writes to its own copy-on-write"
        " overlay.",
        parsing.parse_disks,
        required=True,
        metavar="IMG[:persistent|:copy],...",
    ),
    Option(
        "nics",
        "Comma list of network:ip:mac. An empty network means the default network, an empty"
        " ip none, an empty mac a random unused one. Default: one NIC on the default network.",
        parsing.parse_nics,
        metavar="NET:IP:MAC,...",
    ),
    Option("hints", "Scheduler and VMM hints.", parsing.parse_hints, metavar="K=V,K2=V2"),
    Option("userId", "Owner (id or name); only an admin may name another user.", metavar="USER"),
    Option(
        "groupName",
        "The instance's group: a group is placed all or nothing (createMany: the basename).",
        metavar="GROUP",
    ),
    Option(
        "wait",
        "Follow the new instances (one line per change, on stderr) until all are Running; exit"
        " non-zero with the reason when one is Held, removed, or not Running in time.",
        flag=True,
    ),
    Option(
        "waitTimeout",
        "Seconds --wait waits at most.",
        _seconds,
        default=300.0,
        metavar="SECONDS",
    ),
)


def _spec_fields(ctx: Context, args: Args) -> dict[str, Any]:
    """The fields createVm and createMany share, with names resolved to ids."""
    return {
        "cores": args["cores"],
        "memory": args["memory"],
        "cpuShare": args["cpuShare"],
        "disks": args["disks"],
        "nics": _wire_nics(ctx, args["nics"]),
        "hints": args["hints"] or {},
        "groupName": args["groupName"],
        "userId": _user_id(ctx, args.maybe_text("userId")),
    }


def _wire_nics(ctx: Context, nics: list[parsing.NicArg] | None) -> list[NicIn] | None:
    if nics is None:
        return None
    names: dict[str, int] = {}
    if any(isinstance(n.network, str) for n in nics):
        names = {net.name: net.id for net in ctx.client.all_networks()}
    return parsing.nics_to_wire(nics, names)


def _user_id(ctx: Context, ref: str | None) -> int | None:
    """``--userId`` by id or name; naming another user is the cluster manager's to refuse."""
    if ref is None or ref.isdigit():
        return None if ref is None else int(ref)
    try:
        return ctx.client.get_user(ref).id
    except NotAuthenticated:
        raise
    except Forbidden as exc:
        message = f"--userId {ref}: only an admin may create instances for another user"
        raise Forbidden(message) from exc


def create_vm(ctx: Context, args: Args) -> Output:
    request = InstanceIn(name=args.text("name"), **_spec_fields(ctx, args))
    inst = ctx.client.create_vm(request)
    if args.values.get("wait"):
        return _waited(ctx, [inst], args)
    return table_output(INSTANCE_TABLE, [inst], args, dump(inst))


def _waited(ctx: Context, created: list[InstanceOut], args: Args) -> Output:
    """--wait: progress lines on stderr, then the instances as they ended up; an error for
    each one that did not reach Running (the exit status is then not 0)."""

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    waited = wait_running(ctx.client, created, say=say, timeout=args["waitTimeout"])
    shown = instances_output(waited.instances, args)
    return Output(raw=shown.raw, text=shown.text, errors=tuple(waited.errors))


def create_many(ctx: Context, args: Args) -> Output:
    nics: list[parsing.NicArg] | None = args["nics"]
    if nics and any(n.mac for n in nics):
        raise UsageError("--nics: createMany gives every VM its own MAC; leave the MACs empty")
    request = CreateManyIn(
        basename=args.text("basename"), count=args["count"], **_spec_fields(ctx, args)
    )
    created = ctx.client.create_many(request)
    if args.values.get("wait"):
        return _waited(ctx, created, args)
    return instances_output(created, args)


# --- listing ---------------------------------------------------------------------------


def _listed(ctx: Context, args: Args, filters: InstanceFilters) -> list[InstanceOut]:
    def one_page(after: int | None, limit: int | None) -> list[InstanceOut]:
        chosen = filters.copy()
        chosen["after"], chosen["limit"] = after, limit
        return ctx.client.get_instances(**chosen)

    return listed(args, one_page, lambda: ctx.client.all_instances(**filters))


def get_instances(ctx: Context, args: Args) -> Output:
    filters = InstanceFilters(
        user=args.maybe_text("user"),
        state=args.maybe_text("state"),
        host=args.maybe_text("host"),
        name=args.maybe_text("name"),
    )
    return instances_output(_listed(ctx, args, filters), args)


def get_my_instances(ctx: Context, args: Args) -> Output:
    me = ctx.client.whoami()
    return instances_output(_listed(ctx, args, InstanceFilters(user=str(me.id))), args)


_CREATE_NOTE = (
    " The instance is stored Pending; the scheduler places it on a host and the host's node"
    " manager boots it (watch it with getInstances)."
)

VERBS = (
    Verb(
        "createVm",
        "instances",
        "Create one VM instance.",
        create_vm,
        (
            Option(
                "name",
                "The instance's name (also its DNS name).",
                parsing.parse_instance_name,
                required=True,
                metavar="NAME",
            ),
            *SPEC_OPTIONS,
        ),
        description="Ask for a new VM." + _CREATE_NOTE,
        examples=(
            "tashi createVm --name web --cores 1 --memory 256 --disks debian.qcow2",
            "tashi createVm --name db --disks db.qcow2:True,scratch.qcow2 --nics 2::,3:198.18.0.7:",
            "tashi createVm --name mine --disks debian.qcow2:copy",
            "tashi createVm --name big --cores 4 --memory 4096 --disks base.qcow2"
            " --hints nicModel=e1000,display=True",
        ),
        table=INSTANCE_TABLE,
    ),
    Verb(
        "createMany",
        "instances",
        "Create COUNT VMs named BASENAME-NN, all or none.",
        create_many,
        (
            Option(
                "basename",
                "Name prefix: the VMs are called BASENAME-0 … BASENAME-N.",
                parsing.parse_instance_name,
                required=True,
                metavar="BASENAME",
            ),
            Option("count", "How many VMs.", parsing.parse_count, required=True, metavar="N"),
            *SPEC_OPTIONS,
        ),
        description="Create COUNT instances in one request; numbers are zero-padded to the same"
        " width (web-00 … web-11). Each VM gets its own random MAC, so MACs in --nics must be"
        " left empty." + _CREATE_NOTE,
        examples=(
            "tashi createMany --basename web --count 10 --disks debian.qcow2",
            "tashi createMany --basename w --count 3 --memory 512 --disks base.qcow2 --nics 2::",
            "tashi createMany --basename web --count 3 --disks debian.qcow2 --wait",
        ),
        table=INSTANCE_TABLE,
    ),
    Verb(
        "getInstances",
        "instances",
        "List instances (yours; an admin sees all).",
        get_instances,
        (
            Option("user", "Only this user's instances (id or name).", metavar="USER"),
            Option(
                "state",
                "Only instances in this state (Running, Pending, …).",
                parsing.parse_instance_state,
                metavar="STATE",
            ),
            Option("host", "Only instances on this host (id or name).", metavar="HOST"),
            Option("name", "Only the instance(s) with this name.", metavar="NAME"),
            *PAGE_OPTIONS,
        ),
        description="List instances with the columns id hostId name user state disk memory"
        " cores. A user sees their own instances; admins see every instance. Every instance is"
        " shown, read from the cluster manager in pages; --limit and --after show one page.",
        examples=(
            "tashi getInstances",
            "tashi getInstances --state Running --host node3",
            "tashi getInstances --show-nics --show-cpuShare --hide-disk",
            "tashi getInstances --json",
            "tashi getInstances --limit 100 --after 4200",
        ),
        table=INSTANCE_TABLE,
    ),
    Verb(
        "getMyInstances",
        "instances",
        "List your own instances.",
        get_my_instances,
        PAGE_OPTIONS,
        description="Like getInstances, but only the instances you own (useful for an admin).",
        examples=(
            "tashi getMyInstances",
            "tashi getMyInstances --hide-all --show-name",
            "tashi getMyInstances --limit 20",
        ),
        table=INSTANCE_TABLE,
    ),
)
