"""Checks on what users send, one function per kind of value.

Each returns the normalised value or raises ``InvalidInput`` with a sentence that says what was
wrong and what is allowed. The original Tashi silently scrubbed bad characters out of names; we
refuse instead, because a silently renamed VM is a surprise and a DNS name the user did not ask for.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tashi.domain.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HINT_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_USER = re.compile(r"^[a-z_][a-z0-9_.-]*$", re.IGNORECASE)

MAX_NAME = 63
MAX_HINT_VALUE = 1024
MAX_NOTES = 4096
MIN_CPU_SHARE = 2  # the bounds of cgroup v1 cpu.shares
MAX_CPU_SHARE = 262144


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-VM limits from the cluster manager's settings (``maxCores``, ``maxMemory``)."""

    max_cores: int = 8
    max_memory: int = 8192


def instance_name(name: str) -> str:
    """A VM name: letters, digits, '-' and '.', starting with a letter or digit, not all digits."""
    if not name:
        raise InvalidInput("the instance name is empty")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"the instance name {name!r} is longer than {MAX_NAME} characters")
    if not _NAME.fullmatch(name):
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in ".-"))})
        shown = "".join(bad) if bad else name[0]
        raise InvalidInput(
            f"the instance name {name!r} may only hold letters, digits, '-' and '.', and must"
            f" start with a letter or digit (found {shown!r})"
        )
    if name.isdigit():
        raise InvalidInput(f"the instance name {name!r} is all digits, which reads as an id")
    return name


def host_name(name: str) -> str:
    """A host name follows the same rules as an instance name (it is a DNS name too)."""
    try:
        return instance_name(name)
    except InvalidInput as exc:
        raise InvalidInput(exc.message.replace("instance", "host")) from None


def user_name(name: str) -> str:
    if not name or len(name) > 32 or not _USER.fullmatch(name):
        raise InvalidInput(
            f"the user name {name!r} must be 1-32 characters: letters, digits, '_', '.', '-',"
            " starting with a letter or '_'"
        )
    return name


def network_name(name: str) -> str:
    try:
        return instance_name(name)
    except InvalidInput as exc:
        raise InvalidInput(exc.message.replace("instance", "network")) from None


def cores(value: int, limits: Limits) -> int:
    if not 1 <= value <= limits.max_cores:
        raise InvalidInput(
            f"cores must be between 1 and {limits.max_cores} (maxCores), not {value}"
        )
    return value


def memory(value: int, limits: Limits) -> int:
    if not 1 <= value <= limits.max_memory:
        raise InvalidInput(
            f"memory must be between 1 and {limits.max_memory} MB (maxMemory), not {value}"
        )
    return value


def cpu_share(value: int) -> int:
    if not MIN_CPU_SHARE <= value <= MAX_CPU_SHARE:
        raise InvalidInput(
            f"cpuShare must be between {MIN_CPU_SHARE} and {MAX_CPU_SHARE}, not {value}"
        )
    return value


def image_name(name: str) -> str:
    """An image is named by its file name in the image store: never a path."""
    if "/" in name or "\\" in name or name in (".", "..") or not _IMAGE.fullmatch(name):
        raise InvalidInput(
            f"{name!r} is not an image name: use the name of a file in the image store"
            " (letters, digits, '.', '_', '+', '-'; no paths)"
        )
    return name


def mac(value: str) -> str:
    """A unicast Ethernet address, returned lower-case with colons."""
    text = value.strip().lower().replace("-", ":")
    if not _MAC.fullmatch(text):
        raise InvalidInput(
            f"{value!r} is not a MAC address (expected six hex pairs, 52:54:00:12:34:56)"
        )
    if int(text[:2], 16) & 1:
        raise InvalidInput(f"{value!r} is a multicast MAC address; a NIC needs a unicast one")
    return text


def ip_address(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise InvalidInput(f"{value!r} is not an IPv4 address") from None


def hints(values: Mapping[str, str]) -> dict[str, str]:
    """Scheduler and VMM hints: simple keys, one-line values. Keys starting '__' are Tashi's own."""
    checked: dict[str, str] = {}
    for key, value in values.items():
        if key.startswith("__"):
            raise InvalidInput(f"hint {key!r}: names starting with '__' are reserved for Tashi")
        if not _HINT_KEY.fullmatch(key):
            raise InvalidInput(f"hint {key!r}: names may hold letters, digits, '_', '.', '-'")
        if len(value) > MAX_HINT_VALUE or not value.isprintable():
            raise InvalidInput(
                f"hint {key!r}: the value must be one line of at most {MAX_HINT_VALUE} characters"
            )
        checked[key] = value
    return checked


def notes(text: str) -> str:
    if len(text) > MAX_NOTES:
        raise InvalidInput(f"notes are limited to {MAX_NOTES} characters")
    return text


def password(text: str) -> str:
    if len(text) < 8:
        raise InvalidInput("a password needs at least 8 characters")
    if len(text) > 1024:
        raise InvalidInput("a password is limited to 1024 characters")
    return text
