"""One OCCI request as the handlers see it (``routes.py``, ``mixinroutes.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tashi.domain.models import Principal
from tashi.frontends.occi.context import OcciContext
from tashi.frontends.occi.errors import OcciError
from tashi.frontends.occi.model import Model
from tashi.frontends.occi.parsed import Parsed
from tashi.frontends.occi.render import Writer


@dataclass(frozen=True, slots=True)
class Request:
    """One request, read: who, what, where, and how to answer."""

    ctx: OcciContext
    caller: Principal
    model: Model
    method: str
    path: str
    params: Mapping[str, str]
    pairs: tuple[tuple[str, str], ...]
    parsed: Parsed
    out: Writer

    def allow(self, *methods: str) -> None:
        if self.method not in methods:
            raise OcciError(405, f"{self.method} is not allowed on {self.path}", methods)
