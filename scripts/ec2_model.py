"""Writes ``src/tashi/frontends/ec2/model.json``: the part of AWS's EC2 service model Tashi serves.

    .venv/bin/python scripts/ec2_model.py          (re)write model.json from botocore's model
    .venv/bin/python scripts/ec2_model.py --check  exit 1 when model.json is not what it writes

A development script, run when ``OPERATIONS`` changes or botocore's model is updated; its output
is checked in, so the cluster manager never loads botocore (its EC2 model is ~4 MB of JSON, most
of it documentation and the 800 operations Tashi does not serve). ``tashi.frontends.ec2.model``
reads the file; ``tashi.frontends.ec2.protocol`` parses requests and renders answers from it.

The output keeps botocore's own layout (``metadata``, ``operations``, ``shapes``; a
``botocore.model.ServiceModel`` loads it as it is) with only:

- ``metadata``: the API version, protocol and XML namespace, and ``botocoreVersion``, the
  version of botocore whose model the file was cut from;

- the operations of ``OPERATIONS`` and the closure of their input and output shapes;
- of each shape, the keys the EC2 protocol reads (``KEPT_SHAPE_KEYS``, ``KEPT_MEMBER_KEYS``):
  documentation, enums, deprecation notes and idempotency marks are dropped. Enums go because
  AWS's lists are informational (botocore does not check them either) and Tashi's own values
  (instance types a site defines) are not in them;
- ``otherOperations``: the names of EC2's operations Tashi does not serve, so that a client
  calling one is told ``UnsupportedOperation`` rather than ``InvalidAction``.

Keys are sorted and the file indented by one space, so that a botocore update reads as a diff.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import botocore
import botocore.loaders

from tashi.frontends.ec2.model import SHAPE_TYPES

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "src" / "tashi" / "frontends" / "ec2" / "model.json"

#: The EC2 actions Tashi serves (issue 16, point 3, and the discovery calls clients make first).
#: The one list of them: the front-end's dispatch table is checked against model.json.
OPERATIONS: tuple[str, ...] = (
    # discovery
    "DescribeAccountAttributes",
    "DescribeRegions",
    "DescribeAvailabilityZones",
    "DescribeInstanceTypes",
    # instances
    "RunInstances",
    "DescribeInstances",
    "DescribeInstanceStatus",
    "TerminateInstances",
    "StopInstances",
    "StartInstances",
    "RebootInstances",
    "GetConsoleOutput",
    "DescribeInstanceAttribute",
    "ModifyInstanceAttribute",
    # images
    "DescribeImages",
    "RegisterImage",
    "DeregisterImage",
    # key pairs
    "CreateKeyPair",
    "ImportKeyPair",
    "DescribeKeyPairs",
    "DeleteKeyPair",
    # tags
    "CreateTags",
    "DeleteTags",
    "DescribeTags",
    # security groups
    "CreateSecurityGroup",
    "DescribeSecurityGroups",
    "AuthorizeSecurityGroupIngress",
    "RevokeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupEgress",
    "DeleteSecurityGroup",
    # volumes and snapshots
    "CreateVolume",
    "DescribeVolumes",
    "AttachVolume",
    "DetachVolume",
    "DeleteVolume",
    "CreateSnapshot",
    "DescribeSnapshots",
    "DeleteSnapshot",
)

KEPT_METADATA_KEYS = ("apiVersion", "protocol", "serviceId", "xmlNamespace")
KEPT_OPERATION_KEYS = ("name", "input", "output")
KEPT_SHAPE_KEYS = (
    "type",
    "members",
    "member",
    "required",
    "min",
    "max",
    "locationName",
    "sensitive",
)
KEPT_MEMBER_KEYS = ("shape", "locationName", "queryName")
#: The shape types the EC2 protocol uses; the script fails on any other (a map, say) rather than
#: write a model that ``tashi.frontends.ec2.protocol`` cannot read.
TYPES = SHAPE_TYPES
#: Serialization traits EC2's model does not use and the protocol does not implement.
UNSUPPORTED_TRAITS = frozenset({"flattened", "xmlAttribute", "xmlNamespace", "location"})


def load_botocore_model() -> dict[str, Any]:
    """botocore's EC2 service model (the newest API version it ships, 2016-11-15)."""
    model: dict[str, Any] = botocore.loaders.create_loader().load_service_model("ec2", "service-2")
    return model


def closure(shapes: Mapping[str, Any], roots: Iterable[str]) -> set[str]:
    """The names of ``roots`` and of every shape they reach through members."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = shapes[name]
        refs = list(shape.get("members", {}).values())
        if "member" in shape:
            refs.append(shape["member"])
        todo.extend(ref["shape"] for ref in refs)
    return seen


def _pick(source: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {key: source[key] for key in keys if key in source}


def _check(name: str, shape: Mapping[str, Any]) -> None:
    if shape["type"] not in TYPES:
        raise SystemExit(f"ec2_model: shape {name} is a {shape['type']}, which Tashi cannot read")
    refs = [shape, *shape.get("members", {}).values(), shape.get("member", {})]
    for ref in refs:
        if UNSUPPORTED_TRAITS & ref.keys():
            raise SystemExit(
                f"ec2_model: shape {name} uses {sorted(UNSUPPORTED_TRAITS & ref.keys())}"
            )


def _shape(name: str, shape: Mapping[str, Any]) -> dict[str, Any]:
    _check(name, shape)
    kept = _pick(shape, KEPT_SHAPE_KEYS)
    if "members" in kept:
        kept["members"] = {m: _pick(ref, KEPT_MEMBER_KEYS) for m, ref in kept["members"].items()}
    if "member" in kept:
        kept["member"] = _pick(kept["member"], KEPT_MEMBER_KEYS)
    return kept


def build(
    full: Mapping[str, Any], version: str, operations: Iterable[str] = OPERATIONS
) -> dict[str, Any]:
    """The trimmed model of ``operations``, from the ``full`` model of botocore ``version``
    (recorded in the metadata as ``botocoreVersion``: which botocore wrote the file)."""
    served = {name: _pick(full["operations"][name], KEPT_OPERATION_KEYS) for name in operations}
    roots = [op[io]["shape"] for op in served.values() for io in ("input", "output") if io in op]
    shapes = full["shapes"]
    return {
        "metadata": {**_pick(full["metadata"], KEPT_METADATA_KEYS), "botocoreVersion": version},
        "operations": served,
        "otherOperations": sorted(set(full["operations"]) - set(served)),
        "shapes": {name: _shape(name, shapes[name]) for name in closure(shapes, roots)},
    }


def dumps(model: Mapping[str, Any]) -> str:
    """model.json's text: sorted keys, one space of indent, a final newline."""
    return json.dumps(model, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only compare with model.json")
    args = parser.parse_args(argv)
    text = dumps(build(load_botocore_model(), botocore.__version__))
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"ec2_model: {OUTPUT.relative_to(ROOT)} is stale; run scripts/ec2_model.py")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"ec2_model: wrote {OUTPUT.relative_to(ROOT)} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
