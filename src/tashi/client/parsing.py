"""Pure parsers for the values of the CLI's options, in the original Tashi syntax.

``--disks img[:persistent|:copy],...``, ``--nics net:ip:mac,...``, ``--hints k=v,k2=v2`` and the
plain numbers and names. Each function takes the text the user typed and returns wire values (from
``tashi.api.schemas``) or raises ``UsageError`` saying what was wrong. The verbs (``verbs/``)
name these as the converters of their options; ``argv.py`` prefixes errors with the option.
Checks that need no server reuse ``tashi.domain.validation`` so that the client and the cluster
manager agree on what a MAC, an IP or an image name is; the server still checks everything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tashi.api.schemas import DiskIn, NicIn
from tashi.client.errors import UsageError
from tashi.domain import validation
from tashi.domain.errors import InvalidInput, InvalidState
from tashi.domain.states import HostState, InstanceState

A = TypeVar("A")
R = TypeVar("R")

_TRUE = {"true", "yes", "1", "on", "persistent"}
_FALSE = {"false", "no", "0", "off"}


def _items(text: str, what: str) -> list[str]:
    """Split a comma list, refusing an empty list or an empty item."""
    if not text.strip():
        raise UsageError(f"the {what} list is empty")
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise UsageError(f"{text!r} has an empty item; separate {what} with single commas")
    return items


def _checked(check: Callable[[A], R], value: A) -> R:
    """Run a domain check (``validation.*``), turning its error into ``UsageError``."""
    try:
        return check(value)
    except (InvalidInput, InvalidState) as exc:
        raise UsageError(exc.message) from None


def parse_bool(text: str) -> bool:
    """True/False, yes/no, 1/0, on/off (any case), as the original's ``boolean()``."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise UsageError(f"{text!r} is not True or False")


def parse_int(text: str) -> int:
    """A whole number (``--cores 2``, ``--memory 512``)."""
    try:
        return int(text.strip(), 10)
    except ValueError:
        raise UsageError(f"{text!r} is not a whole number") from None


def parse_count(text: str) -> int:
    """A whole number of at least 1 (``createMany --count``)."""
    value = parse_int(text)
    if value < 1:
        raise UsageError(f"{value} is less than 1")
    return value


def parse_marker(text: str) -> int:
    """A whole number of at least 0: the last id of the page before (``--after``)."""
    value = parse_int(text)
    if value < 0:
        raise UsageError(f"{value} is less than 0")
    return value


def parse_name(text: str) -> str:
    """A non-empty reference or name (``--instance``, ``--host``, ``--basename``)."""
    if not text.strip():
        raise UsageError("the value is empty")
    return text.strip()


def parse_disks(text: str) -> list[DiskIn]:
    """``img[:persistent|:copy],...``: images of the image store, copy-on-write unless
    persistent; ``:copy`` (SLA@SOI) asks for the VM's own persistent copy of the template."""
    disks = []
    for item in _items(text, "disks"):
        uri, sep, flag = item.partition(":")
        image = _checked(validation.image_name, uri)
        if flag.strip().lower() == "copy":
            disks.append(DiskIn(uri=image, persistent=True, copy_=True))
            continue
        persistent = parse_bool(flag) if sep else False
        disks.append(DiskIn(uri=image, persistent=persistent))
    return disks


@dataclass(frozen=True, slots=True)
class NicArg:
    """One ``--nics`` item before network names are resolved to ids (see ``nics_to_wire``)."""

    network: int | str | None
    ip: str | None
    mac: str | None


def parse_nics(text: str) -> list[NicArg]:
    """``net:ip:mac,...``: empty net = the default network, empty ip = none, empty mac = random.

    The MAC holds colons itself, so each item is split at its first two colons only."""
    return [_parse_nic(item) for item in _items(text, "nics")]


def _parse_nic(item: str) -> NicArg:
    network, _, rest = item.partition(":")
    ip, _, mac = rest.partition(":")
    net: int | str | None = None
    if network.strip():
        net = int(network) if network.strip().isdigit() else network.strip()
    return NicArg(
        network=net,
        ip=_checked(validation.ip_address, ip) if ip.strip() else None,
        mac=_checked(validation.mac, mac) if mac.strip() else None,
    )


def nics_to_wire(nics: list[NicArg], network_ids: dict[str, int]) -> list[NicIn]:
    """Wire NICs, with network names looked up in ``network_ids`` (name -> id)."""
    return [NicIn(network=_network_id(n.network, network_ids), ip=n.ip, mac=n.mac) for n in nics]


def _network_id(network: int | str | None, network_ids: dict[str, int]) -> int | None:
    if network is None or isinstance(network, int):
        return network
    if network not in network_ids:
        known = ", ".join(sorted(network_ids)) or "none"
        raise UsageError(f"no network is called {network!r} (known networks: {known})")
    return network_ids[network]


def parse_pairs(text: str, *, allow_empty_values: bool = False) -> dict[str, str]:
    """``k=v,k2=v2`` with each key at most once. An empty value is an error unless allowed."""
    pairs: dict[str, str] = {}
    for item in _items(text, "key=value pairs"):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise UsageError(f"{item!r} is not key=value")
        if not value and not allow_empty_values:
            raise UsageError(f"{item!r} has no value after '='")
        if key in pairs:
            raise UsageError(f"{key!r} is given twice")
        pairs[key] = value
    return pairs


def parse_hints(text: str) -> dict[str, str]:
    """``--hints k=v,k2=v2``: scheduler and VMM hints, checked as the cluster manager will."""
    return _checked(validation.hints, parse_pairs(text))


def parse_config(text: str) -> dict[str, str]:
    """``setHostConfig --config k=v,k2=``: an empty value removes that element."""
    return parse_pairs(text, allow_empty_values=True)


def parse_password(text: str) -> str:
    return _checked(validation.password, text)


def parse_user_name(text: str) -> str:
    return _checked(validation.user_name, text.strip())


def parse_instance_name(text: str) -> str:
    return _checked(validation.instance_name, text.strip())


def parse_instance_state(text: str) -> str:
    """An instance state name in any case (``running``), returned as Tashi spells it."""
    return _checked(InstanceState.parse, text).name


def parse_host_state(text: str) -> str:
    """``Normal`` or ``Drained`` in any case (the states an administrator may set)."""
    state = _checked(HostState.parse, text)
    if state not in (HostState.Normal, HostState.Drained):
        raise UsageError(f"a host can be set to Normal or Drained, not {state.name}")
    return state.name
