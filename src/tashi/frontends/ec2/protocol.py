"""The EC2 Query protocol, the server's side: a request's form parameters -> the dict a boto3
user passed; the dict an action returns -> the XML answer boto3 reads.

``parse`` is the inverse of botocore's ``EC2Serializer`` and ``render`` that of its
``EC2QueryParser``, both driven by the same service model (``model``), so every action Tashi
serves is read and written by the same few functions. The actions see only boto3's shapes
(``{"InstanceIds": [...], "MinCount": 1}``); the wire names (``InstanceId.1``,
``instancesSet``) stay here. Errors the caller made are ``Ec2Error``\\s with AWS's codes; a
``render`` of a value that does not fit its shape is a bug of the action (``TypeError``).

Neighbours: ``sigv4`` checks the request's signature before ``parse`` sees it; the request
handler picks the action from ``Action``, calls ``parse``, the action, then ``render`` (or
``render_error`` with an ``Ec2Error``'s code).
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tashi.frontends.ec2.errors import Ec2Error
from tashi.frontends.ec2.model import Member, Operation, Shape, load

#: The Content-Type of every answer, success or error, as EC2 sends it.
CONTENT_TYPE = "text/xml;charset=UTF-8"

#: Parameters of every request that are no operation's: ``Action`` (the caller has chosen the
#: operation by it), ``Version`` (the caller checks it) and, by prefix, SigV4's query-string
#: signature (``X-Amz-Algorithm``, ``X-Amz-Signature``...; ``sigv4`` has checked them).
#: ``parse`` skips them at the top level; no operation Tashi serves has a member so named.
COMMON_PARAMETERS = frozenset({"Action", "Version"})
SIGV4_PREFIX = "X-Amz-"

_INDEX = re.compile(r"[1-9][0-9]{0,8}")
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
_DOUBLE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?Infinity|NaN")
_INT_RANGE = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}
#: Characters XML 1.0 cannot carry at all, not even as references (and lone surrogates, which
#: UTF-8 cannot): a request holding one is refused, an answer replaces them (see ``_text``).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def operation(action: str) -> Operation:
    """The operation named ``action``. Raises ``Ec2Error`` ``InvalidAction`` for a name EC2
    does not have, ``UnsupportedOperation`` for one of EC2's that Tashi does not serve."""
    model = load()
    op = model.operations.get(action)
    if op is not None:
        return op
    if action in model.other_operations:
        raise Ec2Error("UnsupportedOperation", f"The action {action} is not supported by Tashi.")
    raise Ec2Error("InvalidAction", f"The action {action} is not valid for this web service.")


# -- requests ------------------------------------------------------------------------------------


class _Node:
    """One segment of the parameters' dotted names: ``Filter.1.Name`` is the node ``Name`` under
    ``1`` under ``Filter``; ``value`` is set where a parameter ends."""

    __slots__ = ("children", "value")

    def __init__(self) -> None:
        self.value: str | None = None
        self.children: dict[str, _Node] = {}


def parse(action: str, params: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The request of ``action`` from its form (or query) parameters, as a boto3 user gave it.

    Each value is typed by its shape: integers, booleans (``true``/``false``), doubles,
    timestamps (ISO 8601, as an aware UTC ``datetime``), blobs (base64, as ``bytes``) and
    strings (as sent: ``RunInstances``' ``UserData`` is a string in EC2's model, so it comes as
    the base64 text the client sent; ``ModifyInstanceAttribute``'s ``UserData.Value`` is a blob,
    so it comes decoded). List items are ordered by their indexes, which need not be contiguous.
    ``Action``, ``Version`` and ``X-Amz-*`` are skipped (``COMMON_PARAMETERS``).

    Raises ``Ec2Error``: ``InvalidAction``/``UnsupportedOperation`` (see ``operation``),
    ``UnknownParameter`` for a name the operation does not have, ``MissingParameter`` for a
    required member left out, ``InvalidParameterValue`` for a value its shape refuses (a bad
    number or boolean, a list index that is not a positive integer, a name given twice, a number
    or a list length outside the model's range, a character XML cannot carry).
    """
    op = operation(action)
    root = _tree(params.items() if isinstance(params, Mapping) else params)
    if op.input is None:  # none of Tashi's: every EC2 action takes at least DryRun
        _no_children(root, "")
        return {}
    return _structure(op.input, root, "")


def _tree(pairs: Iterable[tuple[str, str]]) -> _Node:
    root = _Node()
    for name, value in pairs:
        if name in COMMON_PARAMETERS or name.startswith(SIGV4_PREFIX):
            continue
        node = root
        for segment in name.split("."):
            if not segment:
                raise _unknown(name)
            node = node.children.setdefault(segment, _Node())
        if node.value is not None:
            raise _invalid(f"The parameter {name} is given more than once.")
        node.value = value
    return root


def _structure(shape: Shape, node: _Node, path: str) -> dict[str, Any]:
    if node.value is not None:
        raise _invalid(f"The parameter {path} is a structure: give its members as {path}.Member")
    parsed: dict[str, Any] = {}
    for segment, child in node.children.items():
        name = f"{path}.{segment}" if path else segment
        member = shape.by_query_name.get(segment)
        if member is None:
            raise _unknown(name)
        parsed[member.name] = _value(member.shape, child, name)
    for required in shape.required:
        if required not in parsed:
            name = shape.members[required].query_name
            name = f"{path}.{name}" if path else name
            raise Ec2Error("MissingParameter", f"The request must contain the parameter {name}")
    return parsed


def _list(shape: Shape, node: _Node, path: str) -> list[Any]:
    if node.value is not None:
        raise _invalid(f"The parameter {path} is a list: give its items as {path}.1, {path}.2...")
    items: list[tuple[int, _Node]] = []
    for segment, child in node.children.items():
        if not _INDEX.fullmatch(segment):
            raise _invalid(f"The index {segment} of {path}.{segment} is not a positive integer.")
        items.append((int(segment), child))
    _check_range(shape, path, len(items), "number of items")
    items.sort(key=lambda item: item[0])
    assert shape.member is not None  # a list shape always has one (model.from_json)
    element = shape.member.shape
    return [_value(element, child, f"{path}.{index}") for index, child in items]


def _value(shape: Shape, node: _Node, path: str) -> Any:
    if shape.type == "structure":
        return _structure(shape, node, path)
    if shape.type == "list":
        return _list(shape, node, path)
    _no_children(node, path)
    assert node.value is not None  # a node has a value or children (_tree)
    return _SCALARS[shape.type](shape, node.value, path)


def _string(shape: Shape, text: str, path: str) -> str:
    if _NOT_XML.search(text):
        raise _invalid(f"Value for parameter {path} holds a character that is not allowed.")
    return text


def _integer(shape: Shape, text: str, path: str) -> int:
    if not _INTEGER.fullmatch(text):
        raise _invalid(f"Value ({text}) for parameter {path} is invalid. Expecting an integer.")
    value = int(text)
    low, high = _INT_RANGE[shape.type]
    if not low <= value <= high:
        raise _invalid(f"Value ({text}) for parameter {path} is invalid. It is out of range.")
    _check_range(shape, path, value, "value")
    return value


def _boolean(shape: Shape, text: str, path: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise _invalid(f"Value ({text}) for parameter {path} is invalid. Expecting true or false.")
    return lowered == "true"


def _double(shape: Shape, text: str, path: str) -> float:
    if not _DOUBLE.fullmatch(text):
        raise _invalid(f"Value ({text}) for parameter {path} is invalid. Expecting a number.")
    return float(text)


def _timestamp(shape: Shape, text: str, path: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _invalid(
            f"Value ({text}) for parameter {path} is invalid. Expecting an ISO 8601 time."
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _blob(shape: Shape, text: str, path: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise _invalid(f"Value for parameter {path} is invalid. Expecting base64.") from None


_SCALARS: dict[str, Callable[[Shape, str, str], Any]] = {
    "string": _string,
    "integer": _integer,
    "long": _integer,
    "boolean": _boolean,
    "double": _double,
    "float": _double,
    "timestamp": _timestamp,
    "blob": _blob,
}


def _check_range(shape: Shape, path: str, value: int, what: str) -> None:
    """The model's ``min``/``max``: of an integer's value (the ``MaxResults`` of
    ``DescribeInstanceTypes``, 5..100, and ``DescribeSecurityGroups``, 5..1000) or of a list's
    length (``DescribeInstanceTypes``' ``InstanceType.N``, at most 100), which AWS enforces
    (``InvalidParameterValue``). The lengths of strings are not checked here: AWS answers those
    with each action's own code (``InvalidAMIName.Malformed``...)."""
    if shape.min is not None and value < shape.min:
        raise _invalid(
            f"Value ({value}) for parameter {path} is invalid. "
            f"Expecting a {what} greater than or equal to {shape.min}."
        )
    if shape.max is not None and value > shape.max:
        raise _invalid(
            f"Value ({value}) for parameter {path} is invalid. "
            f"Expecting a {what} less than or equal to {shape.max}."
        )


def _no_children(node: _Node, path: str) -> None:
    """A scalar's node ends the name: ``ImageId.1`` names nothing."""
    if node.children:
        segment = next(iter(node.children))
        raise _unknown(f"{path}.{segment}" if path else segment)


def _unknown(name: str) -> Ec2Error:
    return Ec2Error("UnknownParameter", f"The parameter {name} is not recognized")


def _invalid(message: str) -> Ec2Error:
    return Ec2Error("InvalidParameterValue", message)


# -- answers -------------------------------------------------------------------------------------


def render(action: str, result: Mapping[str, Any], request_id: str) -> bytes:
    """The XML answer of ``action`` holding ``result``, in the output shape's boto3 names.

    ``<{action}Response xmlns=…><requestId>…</requestId>…</{action}Response>``: each member
    by its ``locationName`` (``reservationSet``, ``instanceId``), lists as ``<x><item>…</item>
    </x>``, timestamps as ISO 8601 UTC with milliseconds, booleans ``true``/``false``, blobs in
    base64, text escaped. Members absent from ``result`` or ``None`` are left out; they are
    written in ``result``'s order. An action with no output shape answers
    ``<return>true</return>``, as EC2 does.

    Raises ``TypeError`` when ``result`` does not fit the shape (an unknown key, a value of the
    wrong type, a naive ``datetime``): a bug of the action, never the caller's.
    """
    op = operation(action)
    namespace = load().xml_namespace
    out = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{namespace}/">',
        f"<requestId>{_text(request_id)}</requestId>",
    ]
    if op.output is None:
        if result:
            raise TypeError(f"{action} answers nothing, yet got {sorted(result)}")
        out.append("<return>true</return>")
    else:
        _writer(op.output)(result, out)
    out.append(f"</{action}Response>")
    return "".join(out).encode("utf-8")


def render_error(code: str, message: str, request_id: str) -> bytes:
    """EC2's error answer: botocore reads ``code`` and ``message`` into its ``ClientError``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{_text(code)}</Code><Message>{_text(message)}</Message>"
        f"</Error></Errors><RequestID>{_text(request_id)}</RequestID></Response>"
    ).encode()


@dataclass(frozen=True, slots=True)
class Written:
    """A structure of the shape named ``shape`` already written (``write``): its members' XML,
    which ``render`` puts into an answer as it is, wherever that shape goes. What an action
    answers the same way again and again (an instance DescribeInstances lists) is written once
    and kept (``instancecache``)."""

    shape: str
    xml: str


def write(shape: str, value: Mapping[str, Any]) -> Written:
    """``value`` written as the structure ``shape`` (a name of the model), as ``render`` would
    write it inside an answer; ``TypeError`` as ``render``'s when it does not fit."""
    out: list[str] = []
    _writer(load().shapes[shape])(value, out)
    return Written(shape, "".join(out))


#: Writes one value into the answer's parts; made once per shape and member (``_writer``).
_Writer = Callable[[Any, list[str]], None]


@functools.cache
def _writer(shape: Shape) -> _Writer:
    """The writer of a structure's members. Rendering walks these closures, each member's tags
    made once, rather than the model: 1,000 instances are some 40,000 elements."""
    members: dict[str, _Writer] = {}  # filled on first use, so that a cycle of shapes ends

    def write(value: Any, out: list[str]) -> None:
        if type(value) is Written:
            if value.shape != shape.name:
                raise TypeError(f"{shape.name} takes no {value.shape} written before")
            out.append(value.xml)
            return
        if type(value) is not dict and not isinstance(value, Mapping):  # the ABC's check is slow
            raise _mistyped(shape, value)
        if not members:
            members.update((m.name, _member_writer(m)) for m in shape.members.values())
        for key, item in value.items():
            member = members.get(key)
            if member is None:
                raise TypeError(f"{shape.name} has no member {key!r}")
            if item is not None:
                member(item, out)

    return write


def _member_writer(member: Member) -> _Writer:
    shape = member.shape
    start, end = f"<{member.xml_name}>", f"</{member.xml_name}>"
    if shape.type == "structure":
        inner = _writer(shape)

        def structure(value: Any, out: list[str]) -> None:
            out.append(start)
            inner(value, out)
            out.append(end)

        return structure
    if shape.type == "list":
        assert shape.member is not None  # a list shape always has one (model.from_json)
        item = _member_writer(shape.member)

        def items(value: Any, out: list[str]) -> None:
            if not isinstance(value, list | tuple):
                raise _mistyped(shape, value)
            out.append(start)
            for element in value:
                item(element, out)
            out.append(end)

        return items
    text = _SCALAR_TEXT[shape.type]

    def scalar(value: Any, out: list[str]) -> None:
        out.append(start + text(shape, value) + end)

    return scalar


def _string_text(shape: Shape, value: Any) -> str:
    if not isinstance(value, str):
        raise _mistyped(shape, value)
    return _text(value)


def _integer_text(shape: Shape, value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _mistyped(shape, value)
    return str(value)


def _boolean_text(shape: Shape, value: Any) -> str:
    if not isinstance(value, bool):
        raise _mistyped(shape, value)
    return "true" if value else "false"


def _double_text(shape: Shape, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _mistyped(shape, value)
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return repr(number)


def _timestamp_text(shape: Shape, value: Any) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _mistyped(shape, value)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def _blob_text(shape: Shape, value: Any) -> str:
    if not isinstance(value, bytes | bytearray):
        raise _mistyped(shape, value)
    return base64.b64encode(value).decode("ascii")


_SCALAR_TEXT: dict[str, Callable[[Shape, Any], str]] = {
    "string": _string_text,
    "integer": _integer_text,
    "long": _integer_text,
    "boolean": _boolean_text,
    "double": _double_text,
    "float": _double_text,
    "timestamp": _timestamp_text,
    "blob": _blob_text,
}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_TO_ESCAPE = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: str) -> str:
    """``value`` as XML character data. ``\\r`` is written as a reference, which XML parsers
    keep (they turn a raw one into ``\\n``); characters XML 1.0 cannot carry at all (control
    characters, lone surrogates), which ``parse`` refuses but other front-ends may have let in,
    become U+FFFD rather than make the whole answer unreadable."""
    return value if _TO_ESCAPE.search(value) is None else _escape(value)


def _escape(value: str) -> str:
    return _TO_ESCAPE.sub(lambda match: _ESCAPES.get(match.group(), "\ufffd"), value)


def _mistyped(shape: Shape, value: Any) -> TypeError:
    what = "an aware datetime" if shape.type == "timestamp" else f"a {shape.type}"
    return TypeError(f"{shape.name} takes {what}, not {type(value).__name__} {value!r:.80}")
