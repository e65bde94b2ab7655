"""Key pairs: CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair, and the key pair
RunInstances launches with (``launch_key``), by ``clustermanager/keypairs``.

A user sees and uses their own key pairs only, by a name unique among theirs
(``InvalidKeyPair.Duplicate``); another's is ``InvalidKeyPair.NotFound`` as one that does not
exist. CreateKeyPair makes RSA (2048 bits, the default) or ED25519 keys and answers the private
key once, in PEM (``KeyFormat`` ppk is refused: PuTTY's format is not made here). ImportKeyPair
takes ``PublicKeyMaterial`` (base64 on the wire; boto3 and the AWS CLI encode it): an OpenSSH
public key line, RFC 4716, or DER; ``InvalidKey.Format`` otherwise. Deleting a name the user
does not have succeeds, as on AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tashi.clustermanager.keypairs.service import Listed
from tashi.domain.errors import AlreadyExists, NotFound
from tashi.domain.keypairs import KeyMaterialInvalid, KeyPair, KeyType, is_id
from tashi.domain.models import Principal
from tashi.frontends.ec2.actions.tags import specified, tag_errors, tag_list
from tashi.frontends.ec2.context import Ec2Context, Handler, Params, Result
from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.filters import compile_filters

RESOURCE = "key-pair"
_FILTERS = ("key-name", "key-pair-id", "fingerprint", "key-type", "tag-key", "tag:")
_MADE_TYPES = {"rsa": KeyType.rsa, "ed25519": KeyType.ed25519}


def _duplicate(name: str) -> Ec2Error:
    return Ec2Error("InvalidKeyPair.Duplicate", f"The keypair '{name}' already exists.")


def _key_type(text: str | None) -> KeyType:
    found = _MADE_TYPES.get(text or "rsa")
    if found is None:
        raise Ec2Error(
            "InvalidParameterValue",
            f"Value ({text}) for parameter keyType is invalid. Valid values: rsa, ed25519",
        )
    return found


def _check_format(text: str | None) -> None:
    if text in (None, "pem"):
        return
    if text == "ppk":
        raise Ec2Error(
            "InvalidParameterValue",
            "KeyFormat ppk is not supported by Tashi: ask for pem (the default) and convert the"
            " private key with puttygen if PuTTY needs it.",
        )
    raise Ec2Error("InvalidParameterValue", f"Value ({text}) for parameter keyFormat is invalid.")


async def create_key_pair(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    name = params["KeyName"]
    key_type = _key_type(params.get("KeyType"))
    _check_format(params.get("KeyFormat"))
    tags = specified(params, RESOURCE)
    try:
        with tag_errors():
            made = await ctx.service.key_pairs.create(caller, name, key_type, tags)
    except AlreadyExists:
        raise _duplicate(name) from None
    return {
        "KeyFingerprint": made.pair.fingerprint,
        "KeyMaterial": made.private_key,
        "KeyName": made.pair.name,
        "KeyPairId": made.pair.id,
        "Tags": tag_list(made.tags),
    }


async def import_key_pair(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    name = params["KeyName"]
    tags = specified(params, RESOURCE)
    try:
        with tag_errors():
            found = await ctx.service.key_pairs.import_key(
                caller, name, params["PublicKeyMaterial"], tags
            )
    except AlreadyExists:
        raise _duplicate(name) from None
    except KeyMaterialInvalid as exc:
        raise Ec2Error("InvalidKey.Format", exc.message) from None
    return {
        "KeyFingerprint": found.pair.fingerprint,
        "KeyName": found.pair.name,
        "KeyPairId": found.pair.id,
        "Tags": tag_list(found.tags),
    }


def _info(listed: Listed, with_public_key: bool) -> dict[str, Any]:
    pair = listed.pair
    out: dict[str, Any] = {
        "KeyPairId": pair.id,
        "KeyName": pair.name,
        "KeyFingerprint": pair.fingerprint,
        "KeyType": pair.key_type.value,
        "CreateTime": pair.created_at,
        "Tags": tag_list(listed.tags),
    }
    if with_public_key:
        out["PublicKey"] = pair.public_key
    return out


def _values(listed: Listed) -> dict[str, list[str]]:
    pair = listed.pair
    values = {
        "key-name": [pair.name],
        "key-pair-id": [pair.id],
        "fingerprint": [pair.fingerprint],
        "key-type": [pair.key_type.value],
        "tag-key": list(listed.tags),
    }
    values.update({f"tag:{k}": [v] for k, v in listed.tags.items()})
    return values


def _missing(kind: str, missing: list[str]) -> Ec2Error:
    return Ec2Error(
        "InvalidKeyPair.NotFound", f"The key pair{kind} '{', '.join(missing)}' does not exist"
    )


async def describe_key_pairs(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    names = list(params.get("KeyNames") or [])
    key_ids = list(params.get("KeyPairIds") or [])
    matches = compile_filters(params.get("Filters"), _FILTERS, "DescribeKeyPairs")
    mine = await ctx.service.key_pairs.list(caller)
    if missing := [n for n in names if n not in {m.pair.name for m in mine}]:
        raise _missing("", missing)
    if missing := [i for i in key_ids if i not in {m.pair.id for m in mine}]:
        raise _missing(" ID", missing)
    chosen = [
        m
        for m in mine
        if ((not names and not key_ids) or m.pair.name in names or m.pair.id in key_ids)
        and matches(_values(m))
    ]
    with_key = bool(params.get("IncludePublicKey"))
    return {"KeyPairs": [_info(m, with_key) for m in chosen]}


async def delete_key_pair(ctx: Ec2Context, caller: Principal, params: Params) -> Result:
    name, key_id = params.get("KeyName"), params.get("KeyPairId")
    if not name and not key_id:
        raise Ec2Error(
            "MissingParameter", "The request must contain the parameter KeyName or KeyPairId"
        )
    if key_id and not is_id(key_id):
        raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair ID '{key_id}' does not exist")
    gone = await ctx.service.key_pairs.delete(caller, name=name or None, key_id=key_id or None)
    result: dict[str, Any] = {"Return": True}
    if gone is not None:
        result["KeyPairId"] = gone.id
    return result


async def launch_key(ctx: Ec2Context, caller: Principal, name: str | None) -> KeyPair | None:
    """The caller's key pair RunInstances' ``KeyName`` names (``None`` if none is named)."""
    if not name:
        return None
    try:
        return await ctx.service.key_pairs.named(caller, name)
    except NotFound:
        raise Ec2Error("InvalidKeyPair.NotFound", f"The key pair '{name}' does not exist") from None


HANDLERS: Mapping[str, Handler] = {
    "CreateKeyPair": create_key_pair,
    "ImportKeyPair": import_key_pair,
    "DescribeKeyPairs": describe_key_pairs,
    "DeleteKeyPair": delete_key_pair,
}
