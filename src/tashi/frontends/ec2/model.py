"""EC2's service model, the part Tashi serves: its operations and the shapes of their requests
and answers, read once from ``model.json``.

``model.json`` is botocore's own EC2 model (API version 2016-11-15) cut down by
``scripts/ec2_model.py`` to the operations Tashi serves and the closure of their shapes, without
the documentation. This module turns it into linked, typed objects; ``protocol`` walks them to
read a query request and to write an XML answer, as botocore's ``EC2Serializer`` and
``EC2QueryParser`` walk the same model on the client's side.

The names a member goes by on the wire are resolved here, once, as botocore resolves them: the
serialization traits of a member reference override those of the shape it names
(``botocore.model.ShapeResolver``), so a list shape's own ``locationName`` applies when the
member does not give one.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, cast, get_args

ShapeType = Literal[
    "structure",
    "list",
    "string",
    "integer",
    "long",
    "boolean",
    "double",
    "float",
    "timestamp",
    "blob",
]
SHAPE_TYPES: frozenset[str] = frozenset(get_args(ShapeType))

#: The element name of a list's items in an answer when the model names none: EC2 always says
#: ``item`` (botocore reads any element, so the choice is AWS's habit, not botocore's need).
LIST_ITEM = "item"


@dataclass(slots=True, eq=False)
class Shape:
    """A shape of the model. ``members`` (a structure's, keyed and ordered by their boto3 names)
    and ``member`` (a list's items) link to other shapes; the model's shapes may be reached from
    several operations and are shared. ``min``/``max``: a number's range or a list's length, when
    the model gives one. ``sensitive``: not to be logged (user data, private keys). Shapes link
    to each other (and may form cycles), so they are made first and linked after; nothing
    changes them once ``load`` has returned."""

    name: str
    type: ShapeType
    members: dict[str, Member] = field(default_factory=dict, repr=False)
    member: Member | None = field(default=None, repr=False)
    required: tuple[str, ...] = ()
    min: int | None = None
    max: int | None = None
    sensitive: bool = False
    #: a structure's members by their name in a request (``Member.query_name``)
    by_query_name: dict[str, Member] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True, eq=False)
class Member:
    """A member of a structure, or the items of a list.

    ``name``: its key in the dict a boto3 user passes and gets (``InstanceIds``); ``member`` for
    a list's items. ``query_name``: its name in a request, as ``EC2Serializer`` writes it: the
    ``queryName``, else the ``locationName`` capitalised, else ``name`` (``InstanceId``, as in
    ``InstanceId.1``). ``xml_name``: its element in an answer, as ``EC2QueryParser`` reads it:
    the ``locationName``, else ``name`` (``instancesSet``); for a list's items, else ``item``.
    """

    name: str
    shape: Shape
    query_name: str
    xml_name: str


@dataclass(frozen=True, slots=True)
class Operation:
    """An EC2 action: ``input`` is the shape of its request; ``output`` that of its answer, or
    ``None`` for the actions whose answer is only ``<return>true</return>``."""

    name: str
    input: Shape | None
    output: Shape | None


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """``operations``: the actions Tashi serves, by name. ``other_operations``: EC2's other
    actions, which Tashi does not serve. ``xml_namespace``: of every answer's root element."""

    api_version: str
    xml_namespace: str
    operations: Mapping[str, Operation]
    other_operations: frozenset[str]
    shapes: Mapping[str, Shape]


@functools.cache
def load() -> ServiceModel:
    """The model, read from the package's ``model.json`` on the first call and kept."""
    text = resources.files("tashi.frontends.ec2").joinpath("model.json").read_text(encoding="utf-8")
    return from_json(json.loads(text))


def from_json(raw: Mapping[str, Any]) -> ServiceModel:
    """The model of a botocore-layout service description (``model.json``'s, or botocore's own
    full one). Raises ``ValueError`` on a shape type the EC2 protocol does not have."""
    raw_shapes: Mapping[str, Any] = raw["shapes"]
    shapes = {name: _bare_shape(name, spec) for name, spec in raw_shapes.items()}
    for name, spec in raw_shapes.items():
        _link(shapes[name], spec, raw_shapes, shapes)

    def shape_of(op: Mapping[str, Any], key: str) -> Shape | None:
        return shapes[op[key]["shape"]] if key in op else None

    operations = {
        name: Operation(name, shape_of(op, "input"), shape_of(op, "output"))
        for name, op in raw["operations"].items()
    }
    metadata = raw["metadata"]
    return ServiceModel(
        api_version=metadata["apiVersion"],
        xml_namespace=metadata["xmlNamespace"],
        operations=operations,
        other_operations=frozenset(raw.get("otherOperations", ())),
        shapes=shapes,
    )


def _bare_shape(name: str, spec: Mapping[str, Any]) -> Shape:
    if spec["type"] not in SHAPE_TYPES:
        raise ValueError(f"EC2 model: shape {name} is a {spec['type']}, which EC2 does not use")
    return Shape(
        name=name,
        type=cast(ShapeType, spec["type"]),
        required=tuple(spec.get("required", ())),
        min=spec.get("min"),
        max=spec.get("max"),
        sensitive=spec.get("sensitive", False),
    )


def _link(
    shape: Shape, spec: Mapping[str, Any], raw: Mapping[str, Any], shapes: Mapping[str, Shape]
) -> None:
    """Fills in ``shape``'s members, once every shape exists."""
    for name, ref in spec.get("members", {}).items():
        member = _member(name, ref, raw, shapes, item=False)
        shape.members[name] = member
        shape.by_query_name[member.query_name] = member
    if "member" in spec:
        shape.member = _member("member", spec["member"], raw, shapes, item=True)


def _member(
    name: str,
    ref: Mapping[str, Any],
    raw: Mapping[str, Any],
    shapes: Mapping[str, Shape],
    item: bool,
) -> Member:
    target = raw[ref["shape"]]
    location = ref.get("locationName", target.get("locationName"))
    query = ref.get("queryName", target.get("queryName"))
    if query is None:
        query = location[0].upper() + location[1:] if location else name
    default_xml = LIST_ITEM if item else name
    return Member(name, shapes[ref["shape"]], query_name=query, xml_name=location or default_xml)
