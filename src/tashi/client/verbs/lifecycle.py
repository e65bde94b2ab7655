"""Verbs that change a VM's lifecycle: destroy, shut down, pause, suspend, migrate, and batches.

Each prints the original's sentence ("web is suspending.") and, with ``--json``, the instance
as the cluster manager now has it. ``destroyMany``/``shutdownMany`` run server-side as one request;
instances that failed are reported one line each on stderr and set the exit status.
"""

from __future__ import annotations

from collections.abc import Callable

from tashi.api.schemas import BatchResultOut, InstanceEventOut, InstanceOut
from tashi.apiclient.errors import error_of
from tashi.client import parsing
from tashi.client.sdk import TashiClient
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

INSTANCE = Option(
    "instance", "The instance, by id or name.", parsing.parse_name, required=True, metavar="ID|NAME"
)
BASENAME = Option(
    "basename",
    "Acts on your instances named BASENAME-<digits> (as createMany names them).",
    parsing.parse_name,
    required=True,
    metavar="BASENAME",
)


def _action(
    method: Callable[[TashiClient, str], InstanceOut], doing: str
) -> Callable[[Context, Args], Output]:
    def run(ctx: Context, args: Args) -> Output:
        inst = method(ctx.client, args.text("instance"))
        return Output(raw=dump(inst), text=f"{inst.name} is {doing}.")

    return run


def destroy_vm(ctx: Context, args: Args) -> Output:
    ref = args.text("instance")
    inst = ctx.client.destroy_vm(ref, force=bool(args["force"]))
    if inst is None:
        return Output(raw=None, text=f"{ref} was removed.")
    return Output(raw=dump(inst), text=f"{inst.name} is being destroyed.")


def migrate_vm(ctx: Context, args: Args) -> Output:
    target = args.text("targetHostId")
    inst = ctx.client.migrate_vm(args.text("instance"), target)
    return Output(raw=dump(inst), text=f"{inst.name} is migrating to host {target}.")


def activate_vm(ctx: Context, args: Args) -> Output:
    host = args.text("host")
    inst = ctx.client.activate_vm(args.text("instance"), host)
    return Output(raw=dump(inst), text=f"{inst.name} is {inst.state} on host {host}.")


def vmm_specific_call(ctx: Context, args: Args) -> Output:
    answer = ctx.client.vmm_specific_call(args.text("instance"), args.text("arg"))
    return Output(raw=dump(answer), text=answer.message)


def adapt_cpu_share(ctx: Context, args: Args) -> Output:
    inst = ctx.client.adapt_cpu_share(args.text("instance"), args["share"])
    return Output(raw=dump(inst), text=f"{inst.name} now has a CPU share of {inst.cpuShare}.")


HISTORY_TABLE: TableSpec[InstanceEventOut] = TableSpec(
    columns=attributes("id", "at", "kind", "message"),
    default=("at", "kind", "message"),
)


def get_instance_history(ctx: Context, args: Args) -> Output:
    ref = args.text("instance")

    def one_page(after: int | None, limit: int | None) -> list[InstanceEventOut]:
        return ctx.client.get_instance_history(ref, 100 if limit is None else limit, after)

    events = listed(args, one_page, lambda: ctx.client.all_instance_history(ref))
    return table_output(HISTORY_TABLE, events, args, dump(events))


def batch_output(result: BatchResultOut, doing: str) -> Output:
    """One line per instance acted on; failures become errors (stderr, exit status)."""
    lines = [f"{inst.name} is {doing}." for inst in result.done]
    lines += [f"Instance {iid} was removed." for iid in result.removed]
    errors = tuple(error_of(f.error, before=f"{f.name}:") for f in result.failed)
    return Output(raw=dump(result), text="\n".join(lines), errors=errors)


def destroy_many(ctx: Context, args: Args) -> Output:
    return batch_output(ctx.client.destroy_many(args.text("basename")), "being destroyed")


def shutdown_many(ctx: Context, args: Args) -> Output:
    return batch_output(ctx.client.shutdown_many(args.text("basename")), "shutting down")


def _simple(
    name: str, method: Callable[[TashiClient, str], InstanceOut], doing: str, text: str
) -> Verb:
    return Verb(
        name,
        "instances",
        text.split(". ")[0].rstrip(".") + ".",
        _action(method, doing),
        (INSTANCE,),
        description=text,
        examples=(f"tashi {name} --instance web", f"tashi {name} --instance 12"),
    )


VERBS = (
    Verb(
        "getInstanceHistory",
        "instances",
        "Show what happened to an instance, oldest first.",
        get_instance_history,
        (INSTANCE, *PAGE_OPTIONS),
        description="Every change the cluster made to the instance and why: placement, node"
        " reports, migrations with their downtime, deadlines, fencing. An admin can read the"
        " history of a removed instance by its id. The cluster manager keeps each event for"
        " [ClusterManager] historyLifetime (30 days) and an instance's newest"
        " historyPerInstance events (100). Every event kept is shown, read in pages; --limit N"
        " alone shows the newest N, --after ID the events after that event id (--show-id).",
        examples=(
            "tashi getInstanceHistory --instance web",
            "tashi getInstanceHistory --instance 12",
            "tashi getInstanceHistory --instance web --limit 10",
            "tashi getInstanceHistory --instance web --show-id --after 310 --limit 20",
        ),
        table=HISTORY_TABLE,
    ),
    Verb(
        "adaptCpuShare",
        "instances",
        "Change a VM's CPU share (its weight against other VMs on its host).",
        adapt_cpu_share,
        (
            Option(
                "share",
                "The new CPU share (default of a new VM: 1024).",
                parsing.parse_int,
                required=True,
                metavar="N",
            ),
            INSTANCE,
        ),
        description="SLA@SOI's adaptCpuShare: set the VM's relative CPU weight (cgroup"
        " cpu.shares, 2 to 262144). A running VM gets it at once; it is kept for its next start.",
        examples=("tashi adaptCpuShare --share 1500 --instance 3",),
    ),
    Verb(
        "destroyVm",
        "instances",
        "Destroy a VM at once (power off, discard it).",
        destroy_vm,
        (
            INSTANCE,
            Option("force", "Admin: remove the record whatever its state.", flag=True),
        ),
        description="Kill the VM and remove the instance. An instance that never started"
        " (Pending, Held) is removed at once; a running one goes through Destroying until its"
        " node manager reports the process gone. Changes to non-persistent disks are lost.",
        examples=("tashi destroyVm --instance web", "tashi destroyVm --instance 12 --force"),
    ),
    _simple(
        "shutdownVm",
        TashiClient.shutdown_vm,
        "shutting down",
        "Ask the guest to power off (ACPI). The instance is removed when the VM exits.",
    ),
    _simple(
        "pauseVm",
        TashiClient.pause_vm,
        "pausing",
        "Stop the VM's CPUs; memory stays allocated on its host.",
    ),
    _simple("unpauseVm", TashiClient.unpause_vm, "unpausing", "Let a paused VM run again."),
    _simple(
        "suspendVm",
        TashiClient.suspend_vm,
        "suspending",
        "Save the VM's memory to the shared store and stop it. It frees its host.",
    ),
    _simple(
        "resumeVm",
        TashiClient.resume_vm,
        "resuming",
        "Restore a suspended VM. The scheduler places it again, perhaps on another host.",
    ),
    Verb(
        "migrateVm",
        "instances",
        "Move a running VM to another host (live).",
        migrate_vm,
        (
            INSTANCE,
            Option(
                "targetHostId",
                "The host to move to, by id or name.",
                parsing.parse_name,
                required=True,
                metavar="HOST",
                aliases=("dst",),
            ),
        ),
        description="Live-migrate a running VM to another host. --dst is accepted as the"
        " original client's spelling of --targetHostId.",
        examples=(
            "tashi migrateVm --instance web --targetHostId 2",
            "tashi migrateVm --instance web --dst node7",
        ),
    ),
    Verb(
        "activateVm",
        "instances",
        "Start a Pending or Held instance on a given host (the scheduler's call).",
        activate_vm,
        (
            INSTANCE,
            Option(
                "host",
                "The host to start it on, by id or name.",
                parsing.parse_name,
                required=True,
                metavar="HOST",
                aliases=("hostId",),
            ),
        ),
        description="What the scheduling agent does for every Pending instance; needs the"
        " agent or admin role. The host must be up, Normal and not reserved for other users."
        " If its node manager cannot start the VM, the instance becomes Held with the reason.",
        examples=("tashi activateVm --instance web --host node2",),
    ),
    Verb(
        "vmmSpecificCall",
        "instances",
        "Send a hypervisor-specific command to a VM and print its answer.",
        vmm_specific_call,
        (
            INSTANCE,
            Option(
                "arg",
                "The command, e.g. startVnc, stopVnc, changeCdrom:<iso>, reset, nics, list.",
                parsing.parse_name,
                required=True,
                metavar="COMMAND",
            ),
        ),
        description="Pass COMMAND to the VM's hypervisor driver on its host and print what it"
        " answers. Which commands exist depends on the driver; 'list' names them.",
        examples=(
            "tashi vmmSpecificCall --instance web --arg list",
            "tashi vmmSpecificCall --instance web --arg changeCdrom:install.iso",
        ),
    ),
    Verb(
        "destroyMany",
        "instances",
        "Destroy every instance named BASENAME-<digits>.",
        destroy_many,
        (BASENAME,),
        description="destroyVm for every instance named BASENAME-<digits>, in one request."
        " Instances that could not be destroyed are reported on stderr.",
        examples=("tashi destroyMany --basename web",),
    ),
    Verb(
        "shutdownMany",
        "instances",
        "Shut down every instance named BASENAME-<digits>.",
        shutdown_many,
        (BASENAME,),
        description="shutdownVm for every instance named BASENAME-<digits>, in one request."
        " Instances that could not be shut down are reported on stderr.",
        examples=("tashi shutdownMany --basename web",),
    ),
)
