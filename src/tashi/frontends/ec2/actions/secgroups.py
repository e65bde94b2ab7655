"""Security groups: CreateSecurityGroup, DescribeSecurityGroups, AuthorizeSecurityGroupIngress,
RevokeSecurityGroupIngress, AuthorizeSecurityGroupEgress, RevokeSecurityGroupEgress,
DeleteSecurityGroup, and the groups RunInstances launches into (``launch_groups``), by
``clustermanager/secgroups``.

A user sees and uses their own groups only, by id or by a name unique among theirs
(``InvalidGroup.Duplicate``); another's is ``InvalidGroup.NotFound`` as one that does not exist,
a malformed id ``InvalidGroupId.Malformed``. Every user has ``default`` (made on first use,
``CannotDelete``), which lets in all traffic from its own members. Rules come as
``IpPermissions`` (IpProtocol tcp, udp, icmp, -1 or a number; FromPort/ToPort, which are an
ICMP type and code for icmp; IpRanges' CidrIp and UserIdGroupPairs' GroupId or GroupName) or in
EC2's old flat form (CidrIp, IpProtocol, FromPort, ToPort; or SourceSecurityGroupName, all
traffic from that group). A rule already there is ``InvalidPermission.Duplicate``, one to
revoke that is not ``InvalidPermission.NotFound``; a request is all or nothing. Rules get ids
(``sgr-``) that the Revoke actions also take. Outbound rules are given the same way (their
``IpRanges`` and groups the destinations; not in the flat form, which AWS does not take for
them either); a new group has AWS's default one, all to 0.0.0.0/0, shown in
``IpPermissionsEgress`` like any. IPv4 only: IPv6 ranges and prefix lists are refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from tashi.clustermanager.secgroups.service import Listed
from tashi.domain import secgroups as sg
from tashi.domain.errors import InvalidInput, TashiError
from tashi.domain.models import Principal
from tashi.domain.secgroups import Rule
from tashi.frontends.ec2 import ids
from tashi.frontends.ec2.actions.tags import specified, tag_list
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters, page_answer

RESOURCE = "security-group"
_FLAT = ("CidrIp", "IpProtocol", "FromPort", "ToPort", "SourceSecurityGroupName")
_ID = re.compile(r"sg-([0-9a-f]{8}|[0-9a-f]{17})")
_FILTERS = (
    "group-id",
    "group-name",
    "description",
    "owner-id",
    "ip-permission.protocol",
    "ip-permission.from-port",
    "ip-permission.to-port",
    "ip-permission.cidr",
    "ip-permission.group-id",
    "ip-permission.group-name",
    "ip-permission.user-id",
    "egress.ip-permission.protocol",
    "egress.ip-permission.from-port",
    "egress.ip-permission.to-port",
    "egress.ip-permission.cidr",
    "egress.ip-permission.group-id",
    "egress.ip-permission.group-name",
    "egress.ip-permission.user-id",
    "tag-key",
    "tag-value",
    "tag:",
)
#: the service's refusals -> EC2's codes
_CODES: Mapping[type[InvalidInput | TashiError], str] = {
    sg.UnknownGroup: "InvalidGroup.NotFound",
    sg.DuplicateGroup: "InvalidGroup.Duplicate",
    sg.ReservedName: "InvalidGroup.Reserved",
    sg.DuplicateRule: "InvalidPermission.Duplicate",
    sg.UnknownRule: "InvalidPermission.NotFound",
    sg.RulesLimitExceeded: "RulesPerSecurityGroupLimitExceeded",
    sg.GroupLimitExceeded: "SecurityGroupLimitExceeded",
    sg.GroupInUse: "DependencyViolation",
    sg.CannotDelete: "CannotDelete",
    InvalidInput: "InvalidParameterValue",
}


@contextmanager
def group_errors() -> Iterator[None]:
    """The service's refusals as EC2's errors."""
    try:
        yield
    except tuple(_CODES) as exc:
        raise Ec2Error(_code(exc), str(exc)) from exc


def _code(exc: Exception) -> str:
    return next(_CODES[c] for c in type(exc).__mro__ if c in _CODES)


def check_id(text: str) -> str:
    if _ID.fullmatch(text) is None:
        raise Ec2Error("InvalidGroupId.Malformed", f'Invalid id: "{text}" (expecting "sg-...")')
    return text


def _ref(params: Params) -> str:
    """The group a request names by ``GroupId`` or ``GroupName``."""
    group_id, name = params.get("GroupId"), params.get("GroupName")
    if group_id:
        return check_id(group_id)
    if name:
        return str(name)
    raise Ec2Error("MissingParameter", "The request must contain the parameter groupId")


# --- groups ---------------------------------------------------------------------------


async def create_security_group(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    if params.get("VpcId"):
        raise Ec2Error("InvalidVpcID.NotFound", f"The vpc ID '{params['VpcId']}' does not exist")
    with group_errors():
        made = await ctx.service.security_groups.create(
            caller, params["GroupName"], params["Description"], specified(params, RESOURCE)
        )
    return {
        "GroupId": made.group.id,
        "SecurityGroupArn": _arn(ctx, made),
        "Tags": tag_list(made.tags),
    }


async def delete_security_group(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    with group_errors():
        gone = await ctx.service.security_groups.delete(caller, _ref(params))
    return {"Return": True, "GroupId": gone.id}


def _arn(ctx: Ec2Context, listed: Listed) -> str:
    owner = ids.account(listed.group.user_id)
    return f"arn:aws:ec2:{ctx.region}:{owner}:security-group/{listed.group.id}"


def permissions(
    rules: Sequence[Rule], names: Mapping[str, str], owner: str
) -> list[dict[str, Any]]:
    """Rules as EC2's ``IpPermissions``: one per protocol and ports, in the order first added."""
    out: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in rules:
        entry = out.get((r.protocol, r.from_port, r.to_port))
        if entry is None:
            entry = {"IpProtocol": r.protocol, "IpRanges": [], "Ipv6Ranges": []}
            entry |= {"PrefixListIds": [], "UserIdGroupPairs": []}
            if r.protocol in ("tcp", "udp", "icmp"):
                entry |= {"FromPort": r.from_port, "ToPort": r.to_port}
            out[(r.protocol, r.from_port, r.to_port)] = entry
        described = {"Description": r.description} if r.description else {}
        if r.cidr:
            entry["IpRanges"].append({"CidrIp": r.cidr, **described})
        else:
            pair = {"GroupId": r.peer, "UserId": owner, **described}
            if r.peer in names:
                pair["GroupName"] = names[r.peer]
            entry["UserIdGroupPairs"].append(pair)
    return list(out.values())


def _shown(ctx: Ec2Context, listed: Listed, names: Mapping[str, str]) -> dict[str, Any]:
    group = listed.group
    owner = ids.account(group.user_id)
    inbound = [r for r in listed.rules if not r.egress]
    return {
        "Description": group.description,
        "GroupName": group.name,
        "GroupId": group.id,
        "OwnerId": owner,
        "SecurityGroupArn": _arn(ctx, listed),
        "IpPermissions": permissions(inbound, names, owner),
        "IpPermissionsEgress": permissions([r for r in listed.rules if r.egress], names, owner),
        "Tags": tag_list(listed.tags),
    }


def _values(shown: Mapping[str, Any]) -> dict[str, list[str]]:
    tags = {t["Key"]: t["Value"] for t in shown["Tags"]}
    values = {
        "group-id": [shown["GroupId"]],
        "group-name": [shown["GroupName"]],
        "description": [shown["Description"]],
        "owner-id": [shown["OwnerId"]],
        **_permission_values("ip-permission", shown["IpPermissions"]),
        **_permission_values("egress.ip-permission", shown["IpPermissionsEgress"]),
        "tag-key": list(tags),
        "tag-value": list(tags.values()),
    }
    values.update({f"tag:{k}": [v] for k, v in tags.items()})
    return values


def _permission_values(prefix: str, perms: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The values of the filters ``<prefix>.protocol`` and the rest, for these permissions."""
    pairs = [p for perm in perms for p in perm["UserIdGroupPairs"]]
    return {
        f"{prefix}.protocol": [p["IpProtocol"] for p in perms],
        f"{prefix}.from-port": [str(p["FromPort"]) for p in perms if "FromPort" in p],
        f"{prefix}.to-port": [str(p["ToPort"]) for p in perms if "ToPort" in p],
        f"{prefix}.cidr": [r["CidrIp"] for p in perms for r in p["IpRanges"]],
        f"{prefix}.group-id": [p["GroupId"] for p in pairs],
        f"{prefix}.group-name": [p.get("GroupName", "") for p in pairs],
        f"{prefix}.user-id": [p["UserId"] for p in pairs],
    }


async def describe_security_groups(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    wanted_ids = [check_id(i) for i in params.get("GroupIds") or []]
    wanted_names = list(params.get("GroupNames") or [])
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeSecurityGroups")
    mine = await ctx.service.security_groups.describe(caller)
    names = {m.group.id: m.group.name for m in mine}
    for missing in [
        *(i for i in wanted_ids if i not in names),
        *(n for n in wanted_names if n not in names.values()),
    ]:
        raise Ec2Error("InvalidGroup.NotFound", f"The security group '{missing}' does not exist")
    chosen = [
        m
        for m in mine
        if (not wanted_ids and not wanted_names)
        or m.group.id in wanted_ids
        or m.group.name in wanted_names
    ]
    shown = [s for s in (_shown(ctx, m, names) for m in chosen) if matches(_values(s))]
    return page_answer(
        "SecurityGroups",
        shown,
        lambda s: str(s["GroupId"]),
        params,
        listing="security-groups",
    )


# --- rules ----------------------------------------------------------------------------


async def _rules(
    ctx: Ec2Context, caller: Principal, params: Params, *, egress: bool = False
) -> list[Rule]:
    """The rules a request gives, in ``IpPermissions`` or in the flat form (inbound only)."""
    perms = list(params.get("IpPermissions") or [])
    flat = [k for k in _FLAT if params.get(k) is not None]
    if egress and flat:
        raise Ec2Error(
            "InvalidParameterValue",
            f"The parameter {flat[0]} is not supported for outbound rules: use IpPermissions.",
        )
    if perms and flat:
        raise Ec2Error(
            "InvalidParameterCombination",
            f"The parameter {flat[0]} cannot be used with the parameter IpPermissions",
        )
    if flat:
        perms = [_flat(params)]
    if not perms:
        raise Ec2Error("MissingParameter", "The request must contain the parameter ipPermissions")
    out: list[Rule] = []
    for perm in perms:
        out += await _permission(ctx, caller, perm, egress)
    return out


def _flat(params: Params) -> dict[str, Any]:
    source = params.get("SourceSecurityGroupName")
    if source is not None:
        if params.get("CidrIp") is not None:
            raise Ec2Error(
                "InvalidParameterCombination",
                "The parameter SourceSecurityGroupName cannot be used with the parameter CidrIp",
            )
        return {"IpProtocol": params.get("IpProtocol") or sg.ALL,
                "FromPort": params.get("FromPort"), "ToPort": params.get("ToPort"),
                "UserIdGroupPairs": [{"GroupName": source}]}  # fmt: skip
    return {
        "IpProtocol": params.get("IpProtocol"),
        "FromPort": params.get("FromPort"),
        "ToPort": params.get("ToPort"),
        "IpRanges": [{"CidrIp": params["CidrIp"]}] if params.get("CidrIp") else [],
    }


async def _permission(
    ctx: Ec2Context, caller: Principal, perm: Mapping[str, Any], egress: bool
) -> list[Rule]:
    proto = perm.get("IpProtocol")
    if not proto:
        raise Ec2Error("MissingParameter", "The request must contain the parameter ipProtocol")
    if perm.get("Ipv6Ranges") or perm.get("PrefixListIds"):
        raise Ec2Error(
            "InvalidParameterValue",
            "Tashi's security groups take IPv4 ranges (IpRanges) and groups (UserIdGroupPairs)"
            " only, not IPv6 ranges or prefix lists.",
        )
    ranges, pairs = perm.get("IpRanges") or [], perm.get("UserIdGroupPairs") or []
    if not ranges and not pairs:
        what = "a destination" if egress else "a source"
        raise Ec2Error(
            "InvalidParameterValue",
            f"A rule needs {what}: an IpRanges CidrIp or a UserIdGroupPairs group.",
        )
    low, high = perm.get("FromPort"), perm.get("ToPort")
    out = []
    with group_errors():
        for r in ranges:
            cidr = r.get("CidrIp")
            if not cidr:
                raise Ec2Error("MissingParameter", "The request must contain the parameter cidrIp")
            text = r.get("Description") or ""
            out.append(sg.rule(proto, low, high, source_cidr=cidr, text=text, egress=egress))
        for pair in pairs:
            peer = await _peer(ctx, caller, pair)
            text = pair.get("Description") or ""
            out.append(sg.rule(proto, low, high, peer=peer, text=text, egress=egress))
    return out


async def _peer(ctx: Ec2Context, caller: Principal, pair: Mapping[str, Any]) -> str:
    """The id of the caller's group a ``UserIdGroupPair`` names (another account's: unknown)."""
    user = pair.get("UserId")
    ref = pair.get("GroupId") or pair.get("GroupName")
    if not ref:
        raise Ec2Error("MissingParameter", "A UserIdGroupPair needs a GroupId or a GroupName")
    if pair.get("GroupId"):
        check_id(ref)
    if user and user != ids.account(caller.user_id):
        raise Ec2Error("InvalidGroup.NotFound", f"The security group '{ref}' does not exist")
    group = await ctx.service.security_groups.find(caller, ref)
    return group.id


def _rule_wire(group_id: str, owner: str, rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "SecurityGroupRuleId": sg.rule_id(group_id, rule),
        "GroupId": group_id,
        "GroupOwnerId": owner,
        "IsEgress": rule.egress,
        "IpProtocol": rule.protocol,
        "FromPort": rule.from_port,
        "ToPort": rule.to_port,
    }
    if rule.cidr:
        out["CidrIpv4"] = rule.cidr
    else:
        out["ReferencedGroupInfo"] = {"GroupId": rule.peer, "UserId": owner}
    if rule.description:
        out["Description"] = rule.description
    return out


async def _authorize(ctx: Ec2Context, caller: Principal, params: Params, *, egress: bool) -> Result:
    """AuthorizeSecurityGroupIngress, or (``egress``) AuthorizeSecurityGroupEgress."""
    if params.get("TagSpecifications"):
        raise Ec2Error("InvalidParameterValue", "Tashi does not tag security group rules.")
    ref = _ref(params)
    rules = await _rules(ctx, caller, params, egress=egress)
    with group_errors():
        group = await ctx.service.security_groups.find(caller, ref)
        added = await ctx.service.security_groups.authorize(caller, group.id, rules)
    owner = ids.account(group.user_id)
    return {"Return": True, "SecurityGroupRules": [_rule_wire(group.id, owner, r) for r in added]}


async def _revoke(ctx: Ec2Context, caller: Principal, params: Params, *, egress: bool) -> Result:
    """RevokeSecurityGroupIngress, or (``egress``) RevokeSecurityGroupEgress."""
    ref = _ref(params)
    rule_ids = list(params.get("SecurityGroupRuleIds") or [])
    with group_errors():
        group = await ctx.service.security_groups.find(caller, ref)
        if rule_ids:
            rules = await _by_ids(ctx, caller, group.id, rule_ids, egress)
        else:
            rules = await _rules(ctx, caller, params, egress=egress)
        await ctx.service.security_groups.revoke(caller, group.id, rules)
    owner = ids.account(group.user_id)
    revoked = [_rule_wire(group.id, owner, r) for r in rules]
    for item in revoked:
        peer = item.pop("ReferencedGroupInfo", None)
        item.pop("GroupOwnerId")
        if peer is not None:
            item["ReferencedGroupId"] = peer["GroupId"]
    return {"Return": True, "RevokedSecurityGroupRules": revoked}


async def _by_ids(
    ctx: Ec2Context, caller: Principal, group_id: str, rule_ids: list[str], egress: bool
) -> list[Rule]:
    """The group's rules of these ids, of the one direction (another's ids are unknown)."""
    listed = next(
        m for m in await ctx.service.security_groups.describe(caller) if m.group.id == group_id
    )
    held = {sg.rule_id(group_id, r): r for r in listed.rules if r.egress is egress}
    missing = [i for i in rule_ids if i not in held]
    if missing:
        raise Ec2Error(
            "InvalidSecurityGroupRuleId.NotFound",
            f"The security group rule ID '{missing[0]}' does not exist",
        )
    return [held[i] for i in dict.fromkeys(rule_ids)]


# --- launches -------------------------------------------------------------------------


async def launch_groups(ctx: Ec2Context, caller: Principal, params: Params) -> dict[str, str]:
    """The hint that records the groups RunInstances' ``SecurityGroupIds`` (ids) and
    ``SecurityGroups`` (names) name, the caller's ``default`` when it names none."""
    group_ids = [check_id(i) for i in params.get("SecurityGroupIds") or []]
    names = list(params.get("SecurityGroups") or [])
    with group_errors():
        groups = await ctx.service.security_groups.for_launch(caller, group_ids, names)
    return sg.launched_in([(g.id, g.name) for g in groups])


HANDLERS: Mapping[str, Handler] = {
    "CreateSecurityGroup": create_security_group,
    "DescribeSecurityGroups": describe_security_groups,
    "AuthorizeSecurityGroupIngress": partial(_authorize, egress=False),
    "RevokeSecurityGroupIngress": partial(_revoke, egress=False),
    "AuthorizeSecurityGroupEgress": partial(_authorize, egress=True),
    "RevokeSecurityGroupEgress": partial(_revoke, egress=True),
    "DeleteSecurityGroup": delete_security_group,
}
