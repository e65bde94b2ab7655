"""Tags: CreateTags, DeleteTags, DescribeTags on instances (``i-``), images (``ami-``), key
pairs (``key-``), volumes (``vol-``), snapshots (``snap-``) and security groups (``sg-``), by
``clustermanager/tags.py``.

A resource id of no kind Tashi tags, or malformed, is ``InvalidID``; one that is well formed and
not the caller's (or not there) is its kind's ``.NotFound``. Users tag their own instances and
key pairs; images only administrators (``UnauthorizedOperation`` says so), and everyone sees
their tags. The rules (50 tags a resource, keys of 1 to 128 characters not starting ``aws:``,
values of at most 256) answer ``TagLimitExceeded`` and ``InvalidParameterValue`` as AWS's.

``tag_errors``, ``tag_list`` and ``specified`` serve the other actions that take or show tags
(key pairs, DescribeImages).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tashi.domain.models import Principal
from tashi.domain.tags import Kind, Tag, Target, TooManyTags, UnknownTarget
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer

_FILTERS = ("resource-id", "resource-type", "key", "value", "tag:")
_IDS = {
    Kind.instance: re.compile(r"i-([0-9a-f]{8}|[0-9a-f]{17})"),
    Kind.image: re.compile(r"ami-([0-9a-f]{8}|[0-9a-f]{17})"),
    Kind.key_pair: re.compile(r"key-[0-9a-f]{17}"),
    Kind.volume: re.compile(r"vol-[0-9a-f]{17}"),
    Kind.snapshot: re.compile(r"snap-[0-9a-f]{17}"),
    Kind.security_group: re.compile(r"sg-[0-9a-f]{17}"),
}
_NOT_FOUND = {
    Kind.instance: ("InvalidInstanceID.NotFound", "The instance ID '{}' does not exist"),
    Kind.image: ("InvalidAMIID.NotFound", "The image id '[{}]' does not exist"),
    Kind.key_pair: ("InvalidKeyPair.NotFound", "The key pair '{}' does not exist"),
    Kind.volume: ("InvalidVolume.NotFound", "The volume '{}' does not exist."),
    Kind.snapshot: ("InvalidSnapshot.NotFound", "The snapshot '{}' does not exist."),
    Kind.security_group: ("InvalidGroup.NotFound", "The security group '{}' does not exist"),
}


@contextmanager
def tag_errors(shown: Mapping[Target, str] | None = None) -> Iterator[None]:
    """The service's tag refusals as EC2's: past 50 tags ``TagLimitExceeded``; an unknown
    resource its kind's ``.NotFound``, naming it by ``shown`` (its id as the caller gave it)."""
    try:
        yield
    except TooManyTags as exc:
        raise Ec2Error("TagLimitExceeded", exc.message) from exc
    except UnknownTarget as exc:
        code, text = _NOT_FOUND[exc.target.kind]
        name = (shown or {}).get(exc.target, exc.target.ref)
        raise Ec2Error(code, text.format(name)) from exc


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def given(items: Sequence[Mapping[str, Any]] | None) -> dict[str, str]:
    """``Tags`` as a dict; a tag without ``Value`` has the empty value, as AWS."""
    out: dict[str, str] = {}
    for item in items or ():
        key = item.get("Key")
        if key is None:
            raise Ec2Error("InvalidParameterValue", "Tag keys must be given (Tag.N.Key)")
        out[key] = item.get("Value") or ""
    return out


def specified(params: Params, resource: str) -> dict[str, str]:
    """The tags ``TagSpecifications`` gives ``resource`` (the only type the action makes)."""
    out: dict[str, str] = {}
    for spec in params.get("TagSpecifications") or []:
        kind = spec.get("ResourceType")
        if kind != resource:
            raise Ec2Error(
                "InvalidParameterValue",
                f"'{kind}' is not a valid taggable resource type for this operation.",
            )
        out.update(given(spec.get("Tags")))
    return out


async def _targets(
    ctx: Ec2Context, caller: Principal, resources: Sequence[str]
) -> dict[Target, str]:
    """Each resource id as the service's ``Target`` (and back, for the answers)."""
    if not resources:
        raise Ec2Error("MissingParameter", "The request must contain the parameter ResourceId")
    images: dict[str, str] | None = None
    out: dict[Target, str] = {}
    for text in resources:
        kind = next((k for k, p in _IDS.items() if p.fullmatch(text)), None)
        if kind is Kind.instance:
            out[Target(kind, str(ids.parse_instance(text)))] = text
        elif kind is Kind.image:
            if images is None:
                images = {
                    ids.image_id(i.name): i.name for i in await ctx.service.images.list(caller)
                }
            name = images.get(text)
            if name is None:
                raise Ec2Error(*_not_found(Kind.image, text))
            out[Target(kind, name)] = text
        elif kind in (Kind.key_pair, Kind.volume, Kind.snapshot, Kind.security_group):
            out[Target(kind, text)] = text
        else:
            raise Ec2Error("InvalidID", f"The ID '{text}' is not valid")
    return out


def _not_found(kind: Kind, text: str) -> tuple[str, str]:
    code, message = _NOT_FOUND[kind]
    return code, message.format(text)


async def create_tags(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    targets = await _targets(ctx, caller, params["Resources"])
    new = given(params["Tags"])
    if not new:
        raise Ec2Error("MissingParameter", "The request must contain the parameter Tag")
    with tag_errors(targets):
        await ctx.service.tags.create(caller, list(targets), new)
    return {}


async def delete_tags(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    targets = await _targets(ctx, caller, params["Resources"])
    items = params.get("Tags")
    which: dict[str, str | None] | None = None
    if items:  # no Tags: every tag goes; a tag without Value: whatever its value
        which = {}
        for item in items:
            if item.get("Key") is None:
                raise Ec2Error("InvalidParameterValue", "Tag keys must be given (Tag.N.Key)")
            which[item["Key"]] = item.get("Value")
    with tag_errors(targets):
        await ctx.service.tags.delete(caller, list(targets), which)
    return {}


def resource_id(target: Target) -> str:
    if target.kind is Kind.instance:
        return ids.instance_id(int(target.ref))
    if target.kind is Kind.image:
        return ids.image_id(target.ref)
    return target.ref


def _described(tag: Tag) -> dict[str, str]:
    return {
        "ResourceId": resource_id(tag.target),
        "ResourceType": tag.target.kind.value,
        "Key": tag.key,
        "Value": tag.value,
    }


def _values(shown: Mapping[str, str]) -> dict[str, list[str]]:
    return {
        "resource-id": [shown["ResourceId"]],
        "resource-type": [shown["ResourceType"]],
        "key": [shown["Key"]],
        "value": [shown["Value"]],
        f"tag:{shown['Key']}": [shown["Value"]],
    }


async def describe_tags(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeTags")
    rows = [_described(t) for t in await ctx.service.tags.describe(caller)]
    rows = sorted((r for r in rows if matches(_values(r))), key=_cursor)
    return page_answer(
        "Tags",
        rows,
        _cursor,
        params,
        listing="tags",
        minimum=5,
        maximum=1000,
    )


def _cursor(row: Mapping[str, str]) -> str:
    return f"{row['ResourceId']}\x00{row['Key']}"


HANDLERS: Mapping[str, Handler] = {
    "CreateTags": create_tags,
    "DeleteTags": delete_tags,
    "DescribeTags": describe_tags,
}
