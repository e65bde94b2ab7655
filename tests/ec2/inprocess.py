"""One EC2 action run in this process as a client would have it: botocore serializes the
parameters, the front-end's protocol parses them and its handler runs, the answer is rendered and
botocore parses it back. A refusal is ``Refused`` with the EC2 error code the client would see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import botocore.parsers
import botocore.serialize
import botocore.session

from tashi.domain.errors import TashiError
from tashi.domain.models import Principal
from tashi.frontends.ec2 import protocol
from tashi.frontends.ec2.actions import HANDLERS
from tashi.frontends.ec2.app import ec2_error
from tashi.frontends.ec2.context import Ec2Context

_MODEL = botocore.session.get_session().get_service_model("ec2")
_SERIALIZER = botocore.serialize.create_serializer("ec2")
_PARSER = botocore.parsers.create_parser("ec2")


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def call(
    ctx: Ec2Context,
    caller: Principal,
    run: Callable[[Awaitable[Any]], Any],
    action: str,
    params: dict[str, Any],
) -> dict[str, Any]:
    """``action`` with ``params`` for ``caller``; ``run`` drives the handler's coroutine."""
    op = _MODEL.operation_model(action)
    body = _SERIALIZER.serialize_to_request(params, op)["body"]
    pairs = [(k, str(v)) for k, v in body.items() if k not in ("Action", "Version")]
    try:
        parsed = protocol.parse(action, pairs)
        parsed.pop("DryRun", None)
        result = run(HANDLERS[action](ctx, caller, parsed))
    except TashiError as exc:
        err = ec2_error(exc, "test", action)
        raise Refused(err.code, err.message) from exc
    xml = protocol.render(action, result, "test")
    answer = {"body": xml, "headers": {}, "status_code": 200}
    return dict(_PARSER.parse(answer, op.output_shape))
