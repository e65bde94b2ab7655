"""Verbs for the EC2 API's access keys: createAccessKey, listAccessKeys, deleteAccessKey.

A key is what AWS tools sign their requests with (``aws configure``, boto3's
``aws_access_key_id``/``aws_secret_access_key``). ``createAccessKey`` prints the secret, the
one time it is told; the cluster manager never shows it again.
"""

from __future__ import annotations

from tashi.api.schemas import AccessKeyOut
from tashi.client import parsing
from tashi.client.tables import TableSpec, attributes
from tashi.client.verbs.base import (
    PAGE_OPTIONS,
    Args,
    Context,
    Option,
    Output,
    Verb,
    dump,
    table_output,
)

KEY_TABLE: TableSpec[AccessKeyOut] = TableSpec(
    columns=attributes("accessKeyId", "user", "createdAt"),
    default=("accessKeyId", "user", "createdAt"),
)


def create_access_key(ctx: Context, args: Args) -> Output:
    key = ctx.client.create_access_key(args.maybe_text("user"))
    text = (
        f"Access key {key.accessKeyId} made for {key.user}.\n"
        f"Secret access key: {key.secretAccessKey}\n"
        "Keep the secret now: it is never shown again. For the AWS CLI:\n"
        f"  aws configure set aws_access_key_id {key.accessKeyId}\n"
        "  aws configure set aws_secret_access_key <the secret>"
    )
    return Output(raw=dump(key), text=text)


def list_access_keys(ctx: Context, args: Args) -> Output:
    user = "*" if args["all"] else args.maybe_text("user")
    after, limit = args.maybe_text("after"), args.values.get("limit")
    if after is None and limit is None:
        keys = ctx.client.all_access_keys(user)
    else:
        keys = ctx.client.list_access_keys(user, after, limit)
    return table_output(KEY_TABLE, keys, args, dump(keys))


def delete_access_key(ctx: Context, args: Args) -> Output:
    key = ctx.client.delete_access_key(args.text("key"))
    return Output(raw=dump(key), text=f"Access key {key.accessKeyId} of {key.user} deleted.")


_USER = Option(
    "user",
    "Admins: the user, by id or name (default: yourself).",
    parsing.parse_name,
    metavar="ID|NAME",
)

VERBS = (
    Verb(
        "createAccessKey",
        "cluster",
        "Make an access key for the EC2 API (prints its secret once).",
        create_access_key,
        (_USER,),
        description="Make an access key id and secret for AWS tools (boto3, the AWS CLI) to"
        " sign their requests to Tashi's EC2 API with. The secret is printed now and never"
        " again; a user may hold several keys.",
        examples=("tashi createAccessKey", "tashi createAccessKey --user mihas"),
    ),
    Verb(
        "listAccessKeys",
        "cluster",
        "List access keys of the EC2 API (never their secrets).",
        list_access_keys,
        (
            _USER,
            Option("all", "Admins: every user's keys.", flag=True),
            PAGE_OPTIONS[0],
            Option(
                "after",
                "Show only the keys after this one (the last key id of the page before).",
                parsing.parse_name,
                metavar="KEY",
            ),
        ),
        description="List access keys, oldest first. Every key is shown, read in pages;"
        " --limit and --after show one page.",
        examples=(
            "tashi listAccessKeys",
            "tashi listAccessKeys --all",
            "tashi listAccessKeys --all --limit 100 --after AKIA0123456789ABCDEF",
        ),
        table=KEY_TABLE,
    ),
    Verb(
        "deleteAccessKey",
        "cluster",
        "Delete an access key of the EC2 API.",
        delete_access_key,
        (
            Option(
                "key", "The access key id.", parsing.parse_name, required=True, metavar="AKIA..."
            ),
        ),
        description="Delete one of your access keys (admins: anyone's); requests signed with"
        " it are refused from then on.",
        examples=("tashi deleteAccessKey --key AKIAEXAMPLE7EXAMPLE2",),
    ),
)
