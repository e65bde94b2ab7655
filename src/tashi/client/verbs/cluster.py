"""Verbs for networks, users and images, and their administration.

getNetworks, getUsers, getImages, whoami for everyone; addNetwork, delNetwork (which the original
lacked), registerUser and unregisterUser (SLA@SOI) for admins. ``registerUser`` asks for the
password on a terminal when ``--passwd`` is not given, so that it stays out of ``ps``.
"""

from __future__ import annotations

from tashi.api.schemas import ImageOut, NetworkIn, NetworkOut, UserIn, UserOut
from tashi.client import parsing
from tashi.client.errors import UsageError
from tashi.client.tables import Column, TableSpec, attributes, human_size
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

NETWORK_TABLE: TableSpec[NetworkOut] = TableSpec(
    columns=attributes("id", "name", "default"),
    default=("id", "name", "default"),
)
USER_TABLE: TableSpec[UserOut] = TableSpec(
    columns=attributes("id", "name", "role", "priority", "createdAt"),
    default=("id", "name", "role", "priority"),
)
IMAGE_TABLE: TableSpec[ImageOut] = TableSpec(
    columns=(
        *attributes("id", "imageName"),
        Column("imageSize", lambda i: human_size(i.imageSize)),
        *attributes("format"),
        Column(
            "virtualSize", lambda i: None if i.virtualSize is None else human_size(i.virtualSize)
        ),
    ),
    default=("id", "imageName", "imageSize"),
)
ROLES = ("user", "admin", "agent", "node")


def get_networks(ctx: Context, args: Args) -> Output:
    networks = listed(args, ctx.client.get_networks, ctx.client.all_networks)
    return table_output(NETWORK_TABLE, networks, args, dump(networks))


def get_users(ctx: Context, args: Args) -> Output:
    users = listed(args, ctx.client.get_users, ctx.client.all_users)
    return table_output(USER_TABLE, users, args, dump(users))


def get_images(ctx: Context, args: Args) -> Output:
    images = listed(args, ctx.client.get_images, ctx.client.all_images)
    return table_output(IMAGE_TABLE, images, args, dump(images))


def whoami(ctx: Context, args: Args) -> Output:
    me = ctx.client.whoami()
    return table_output(USER_TABLE, [me], args, dump(me))


def add_network(ctx: Context, args: Args) -> Output:
    net = ctx.client.add_network(NetworkIn(id=args["id"], name=args.text("name")))
    return Output(raw=dump(net), text=f"Network {net.name} added with id {net.id}.")


def del_network(ctx: Context, args: Args) -> Output:
    net = ctx.client.del_network(args.text("network"))
    return Output(raw=dump(net), text=f"Network {net.name} (id {net.id}) removed.")


def parse_role(text: str) -> str:
    role = text.strip().lower()
    if role not in ROLES:
        raise UsageError(f"{text!r} is not a role; roles: {', '.join(ROLES)}")
    return role


def _ask_twice(ctx: Context) -> tuple[str, str]:
    try:
        return ctx.ask_secret("Password for the new user: "), ctx.ask_secret("Password again: ")
    except UsageError as exc:
        raise UsageError(f"registerUser needs --passwd here: {exc.message}") from None


def _new_password(ctx: Context, args: Args) -> str:
    """``--passwd``, or asked twice on the terminal (so it stays out of ``ps``)."""
    given = args.maybe_text("passwd")
    if given is not None:
        return given
    first, again = _ask_twice(ctx)
    if again != first:
        raise UsageError("the two passwords differ")
    return parsing.parse_password(first)


def register_user(ctx: Context, args: Args) -> Output:
    request = UserIn(
        name=args.text("name"),
        password=_new_password(ctx, args),
        priority=args["priority"],
        role=args.text("role"),
    )
    user = ctx.client.register_user(request)
    return Output(raw=dump(user), text=f"User {user.name} registered with id {user.id}.")


def unregister_user(ctx: Context, args: Args) -> Output:
    user = ctx.client.unregister_user(args.text("user"))
    return Output(raw=dump(user), text=f"User {user.name} (id {user.id}) unregistered.")


VERBS = (
    Verb(
        "getNetworks",
        "cluster",
        "List the networks.",
        get_networks,
        PAGE_OPTIONS,
        description="List the virtual networks; default marks the one a NIC joins when"
        " --nics names none. Every network is shown, read in pages; --limit and --after show"
        " one page.",
        examples=("tashi getNetworks", "tashi getNetworks --limit 10"),
        table=NETWORK_TABLE,
    ),
    Verb(
        "getUsers",
        "cluster",
        "List the users.",
        get_users,
        PAGE_OPTIONS,
        description="List the users (a user sees only themselves). Every user is shown, read"
        " in pages; --limit and --after show one page.",
        examples=(
            "tashi getUsers",
            "tashi getUsers --show-createdAt",
            "tashi getUsers --limit 50 --after 200",
        ),
        table=USER_TABLE,
    ),
    Verb(
        "getImages",
        "cluster",
        "List the disk images of the image store.",
        get_images,
        PAGE_OPTIONS,
        description="List the images createVm --disks can name, with their size on disk."
        " Every image is shown, read in pages; --limit and --after show one page (an image's"
        " id is its place in name order).",
        examples=(
            "tashi getImages",
            "tashi getImages --show-format --show-virtualSize",
            "tashi getImages --limit 20 --after 19",
        ),
        table=IMAGE_TABLE,
    ),
    Verb(
        "whoami",
        "cluster",
        "Show the user you are logged in as.",
        whoami,
        examples=("tashi whoami",),
        table=USER_TABLE,
    ),
    Verb(
        "addNetwork",
        "admin",
        "Add a virtual network.",
        add_network,
        (
            Option(
                "id",
                "Its number, also its VLAN/VNI (0-16777215).",
                parsing.parse_int,
                required=True,
                metavar="N",
            ),
            Option("name", "Its name.", parsing.parse_name, required=True, metavar="NAME"),
        ),
        examples=("tashi addNetwork --id 2 --name lab",),
    ),
    Verb(
        "delNetwork",
        "admin",
        "Remove a virtual network no instance uses.",
        del_network,
        (
            Option(
                "network",
                "The network, by id or name.",
                parsing.parse_name,
                required=True,
                metavar="ID|NAME",
            ),
        ),
        examples=("tashi delNetwork --network lab",),
    ),
    Verb(
        "registerUser",
        "admin",
        "Create a user.",
        register_user,
        (
            Option(
                "name", "The user's name.", parsing.parse_user_name, required=True, metavar="NAME"
            ),
            Option(
                "passwd",
                "The password (8+ characters). Omit it to be asked on the"
                " terminal, which keeps it out of the process list.",
                parsing.parse_password,
                metavar="PASSWORD",
            ),
            Option(
                "priority",
                "Scheduling priority: higher is placed first (SLA@SOI).",
                parsing.parse_int,
                default=0,
                metavar="N",
            ),
            Option(
                "role", f"One of {', '.join(ROLES)}.", parse_role, default="user", metavar="ROLE"
            ),
        ),
        examples=(
            "tashi registerUser --name mihas --passwd 'mihas-12!' --priority 12",
            "tashi registerUser --name ops --role admin",
        ),
    ),
    Verb(
        "unregisterUser",
        "admin",
        "Remove a user.",
        unregister_user,
        (
            Option(
                "user",
                "The user, by id or name.",
                parsing.parse_name,
                required=True,
                metavar="ID|NAME",
                aliases=("userId",),
            ),
        ),
        description="Remove a user and revoke their tokens. --userId is accepted as the SLA@SOI"
        " spelling.",
        examples=("tashi unregisterUser --user mihas", "tashi unregisterUser --userId 4"),
    ),
)
