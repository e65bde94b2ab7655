"""Instance types: named sizes (``t3.micro``: 2 cores, 1 GiB) that the EC2 front-end's
``InstanceType`` and, later, OCCI's ``resource_tpl`` mixins name.

One table for every front-end. Sites set it in ``[InstanceTypes]`` (``name = cores, memoryMB``),
which starts from ``DEFAULTS`` (AWS's general-purpose sizes and Tashi's own ``tashi.tiny``) and
may add types or change them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tashi.domain.errors import InvalidInput

_NAME = re.compile(r"[a-z0-9][a-z0-9.\-]{0,63}")

#: name -> "cores, memory in MB", as written in ``[InstanceTypes]``
DEFAULTS: Mapping[str, str] = {
    "tashi.tiny": "1, 128",
    "t3.nano": "2, 512",
    "t3.micro": "2, 1024",
    "t3.small": "2, 2048",
    "t3.medium": "2, 4096",
    "t3.large": "2, 8192",
    "t3.xlarge": "4, 16384",
    "t3.2xlarge": "8, 32768",
    "m5.large": "2, 8192",
    "m5.xlarge": "4, 16384",
    "c5.large": "2, 4096",
    "c5.xlarge": "4, 8192",
}


@dataclass(frozen=True, slots=True)
class InstanceType:
    name: str
    cores: int
    memory: int  # MB


def parse(name: str, text: str) -> InstanceType:
    """``InstanceType`` from its table line; ``InvalidInput`` naming the line when it is wrong."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{name!r} is not an instance type name (lower-case letters, digits, dots and dashes)"
        )
    parts = [p.strip() for p in text.replace(",", " ").split()]
    try:
        cores, memory = (int(p) for p in parts)
    except ValueError:
        raise InvalidInput(
            f"instance type {name} = {text!r}: expected 'cores, memory in MB' (e.g. 2, 1024)"
        ) from None
    if cores < 1 or memory < 16:
        raise InvalidInput(f"instance type {name} = {text!r}: at least 1 core and 16 MB")
    return InstanceType(name, cores, memory)


def table(entries: Iterable[tuple[str, str]]) -> dict[str, InstanceType]:
    """The types of ``entries`` (name, line) by name."""
    return {name: parse(name, text) for name, text in entries}
