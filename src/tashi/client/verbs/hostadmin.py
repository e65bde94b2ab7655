"""Host administration verbs (admin role), from ``tashi-admin`` and the SLA@SOI client.

setHostState, setHostNotes, addHost (registerHost), delHost (unregisterHost), addReservation,
delReservation, getReservation and setHostConfig. Hosts are named by id or name; ``--hostId`` is
accepted as the SLA@SOI spelling of ``--host``. Each prints the original's sentence.
"""

from __future__ import annotations

from tashi.api.schemas import HostIn, ReservationOut
from tashi.client import parsing
from tashi.client.errors import UsageError
from tashi.client.verbs.base import Args, Context, Option, Output, Verb, dump

HOST = Option(
    "host",
    "The host, by id or name.",
    parsing.parse_name,
    required=True,
    metavar="ID|NAME",
    aliases=("hostId",),
)
USER = Option(
    "user", "The user, by id or name.", parsing.parse_name, required=True, metavar="ID|NAME"
)


def set_host_state(ctx: Context, args: Args) -> Output:
    host = ctx.client.set_host_state(args.text("host"), args.text("state"))
    return Output(raw=dump(host), text=f"Host state set to {host.state}.")


def set_host_notes(ctx: Context, args: Args) -> Output:
    host = ctx.client.set_host_notes(args.text("host"), args.text("notes"))
    return Output(raw=dump(host), text=f"Host notes of {host.name} set.")


def add_host(ctx: Context, args: Args) -> Output:
    host = ctx.client.register_host(HostIn(name=args.text("host")))
    return Output(raw=dump(host), text=f"Registered host {host.name} with hostId {host.id}.")


def del_host(ctx: Context, args: Args) -> Output:
    host = ctx.client.unregister_host(args.text("host"))
    return Output(raw=dump(host), text=f"Host {host.name} (hostId {host.id}) unregistered.")


def reservation_sentence(res: ReservationOut) -> str:
    if not res.users:
        return f"Host {res.hostName} is not reserved."
    return f"Host {res.hostName} reserved for users {', '.join(u.name for u in res.users)}."


def _reservation_output(res: ReservationOut) -> Output:
    return Output(raw=dump(res), text=reservation_sentence(res))


def get_reservation(ctx: Context, args: Args) -> Output:
    return _reservation_output(ctx.client.get_reservation(args.text("host")))


def add_reservation(ctx: Context, args: Args) -> Output:
    host = ctx.client.add_reservation(args.text("host"), args.text("user"))
    return _reservation_output(ctx.client.get_reservation(host.id))


def del_reservation(ctx: Context, args: Args) -> Output:
    host = ctx.client.del_reservation(args.text("host"), args.text("user"))
    return _reservation_output(ctx.client.get_reservation(host.id))


def _config_changes(args: Args) -> dict[str, str]:
    """``--config k=v,...``, or SLA@SOI's ``--elemName k --value v``, never both."""
    config: dict[str, str] | None = args["config"]
    element = args.maybe_text("elemName")
    if (config is None) == (element is None):
        raise UsageError("setHostConfig needs either --config K=V,... or --elemName K --value V")
    if element is not None:
        value = args.maybe_text("value")
        if value is None:
            raise UsageError("--elemName needs --value (an empty value removes the element)")
        return {element: value}
    if args.maybe_text("value") is not None:
        raise UsageError("--value goes with --elemName, not with --config")
    return dict(config or {})


def set_host_config(ctx: Context, args: Args) -> Output:
    host = ctx.client.set_host_config(args.text("host"), _config_changes(args))
    shown = ",".join(f"{k}={v}" for k, v in sorted(host.config.items())) or "(empty)"
    return Output(raw=dump(host), text=f"Host config of {host.name}: {shown}")


VERBS = (
    Verb(
        "setHostState",
        "admin",
        "Drain a host (no new VMs) or return it to Normal.",
        set_host_state,
        (
            HOST,
            Option(
                "state",
                "Normal or Drained (any case).",
                parsing.parse_host_state,
                required=True,
                metavar="STATE",
            ),
        ),
        description="A Drained host keeps its running VMs but the scheduler places no new ones"
        " on it; setting it Normal again makes it available.",
        examples=(
            "tashi setHostState --host node3 --state Drained",
            "tashi setHostState --host 3 --state normal",
        ),
    ),
    Verb(
        "setHostNotes",
        "admin",
        "Attach a free-text note to a host.",
        set_host_notes,
        (HOST, Option("notes", "The text (empty clears it).", required=True, metavar="TEXT")),
        description="Replace the notes shown in getHosts' notes column.",
        examples=("tashi setHostNotes --host node3 --notes 'disk 2 failing, ticket 1234'",),
    ),
    Verb(
        "addHost",
        "admin",
        "Register a host by name; its node manager fills in the rest.",
        add_host,
        (Option("host", "The host's name.", parsing.parse_name, required=True, metavar="NAME"),),
        description="Create the record of a host. Its memory, cores and version stay 0 until"
        " the node manager on it reports.",
        examples=("tashi addHost --host node7",),
        aliases=("registerHost",),
    ),
    Verb(
        "delHost",
        "admin",
        "Unregister a host.",
        del_host,
        (HOST,),
        description="Remove a host's record. The cluster manager refuses while instances are"
        " placed on it.",
        examples=("tashi delHost --host node7", "tashi unregisterHost --hostId 2"),
        aliases=("unregisterHost",),
    ),
    Verb(
        "addReservation",
        "admin",
        "Reserve a host for a user (in addition to those already reserved).",
        add_reservation,
        (HOST, USER),
        description="A reserved host takes only the VMs of the users it is reserved for.",
        examples=("tashi addReservation --host node3 --user alice",),
    ),
    Verb(
        "delReservation",
        "admin",
        "Remove a user from a host's reservation.",
        del_reservation,
        (HOST, USER),
        description="When the last user is removed the host is open to everyone again.",
        examples=("tashi delReservation --host node3 --user alice",),
    ),
    Verb(
        "getReservation",
        "admin",
        "Show the users a host is reserved for.",
        get_reservation,
        (HOST,),
        examples=("tashi getReservation --host node3",),
    ),
    Verb(
        "setHostConfig",
        "admin",
        "Set a host's configuration elements (SLA@SOI: auditability, location, …).",
        set_host_config,
        (
            HOST,
            Option(
                "config",
                "Elements to set; an empty value removes one.",
                parsing.parse_config,
                metavar="K=V,K2=V2",
            ),
            Option(
                "elemName",
                "SLA@SOI form: one element's name (with --value).",
                parsing.parse_name,
                metavar="NAME",
            ),
            Option("value", "SLA@SOI form: that element's value.", metavar="VALUE"),
        ),
        description="Set or remove configuration elements that placement policies read."
        " Elements not named are kept.",
        examples=(
            "tashi setHostConfig --host node3 --config auditability=True,location=EU",
            "tashi setHostConfig --host node3 --config location=",
            "tashi setHostConfig --hostId 2 --elemName auditability --value True",
        ),
    ),
)
