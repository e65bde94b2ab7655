"""The lines the tiny guest prints on its serial console, and their parser.

The guest (``tashi.guestimage.guestfiles``) writes each marker on a line of its own::

    TASHI-GUEST-UP hostname=tashi root=/dev/vda uptime=1.93
    TASHI-GUEST-DHCP eth0 198.18.0.10 hostname=vm1 uptime=2.41
    TASHI-GUEST-POWEROFF reason=acpi uptime=30.02

``UP`` once, when userspace is up (before any DHCP lease); ``DHCP`` once per lease obtained, per
interface (again on a renewal that changes the address); ``POWEROFF`` when the ACPI power button
(QMP ``system_powerdown``) starts a clean shutdown; ``DISK`` when a disk is hot-plugged or
-unplugged after ``UP`` (a volume: ``TASHI-GUEST-DISK action=add name=vdb size=1073741824
uptime=12.03``, ``action=remove`` without ``size``; the size in bytes). ``uptime`` is the
guest's own clock (seconds since its kernel started). Other output may share the line (a
shell prompt), so parse with ``parse`` (which searches) rather than matching at the line start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UP = "TASHI-GUEST-UP"
DHCP = "TASHI-GUEST-DHCP"
POWEROFF = "TASHI-GUEST-POWEROFF"
DISK = "TASHI-GUEST-DISK"

_LINE = re.compile(
    r"(?P<kind>TASHI-GUEST-(?:UP|DHCP|POWEROFF|DISK))"
    r"(?: (?P<iface>[^\s=]+) (?P<ip>[0-9.]+))?"
    r"(?P<fields>(?: [a-z_]+=\S*)*)\s*$"
)


@dataclass(frozen=True, slots=True)
class Marker:
    """One parsed marker: ``kind`` is one of ``UP``, ``DHCP``, ``POWEROFF``, ``DISK`` (the
    constants).

    ``iface`` and ``ip`` are set for ``DHCP`` only; ``fields`` holds the ``key=value`` pairs."""

    kind: str
    iface: str | None = None
    ip: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def hostname(self) -> str | None:
        return self.fields.get("hostname")


def parse(line: str) -> Marker | None:
    """The marker on ``line``, or ``None`` if it holds none."""
    found = _LINE.search(line)
    if found is None or (found["kind"] == DHCP) != (found["ip"] is not None):
        return None
    pairs = (item.partition("=") for item in found["fields"].split())
    return Marker(
        kind=found["kind"],
        iface=found["iface"],
        ip=found["ip"],
        fields={key: value for key, _, value in pairs},
    )


def scan(text: str) -> list[Marker]:
    """Every marker in a console log, in order."""
    return [marker for line in text.splitlines() if (marker := parse(line)) is not None]
