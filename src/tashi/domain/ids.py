"""Typed identifiers.

Ids are assigned by the database (never by a client) and never reused. ``NetworkId`` is the one
exception: it is chosen by the administrator because it doubles as the VLAN/VNI number, as in the
original Tashi (``/etc/qemu-ifup.<networkId>``, ``ipRange<networkId>``).
"""

from __future__ import annotations

from typing import NewType

InstanceId = NewType("InstanceId", int)
HostId = NewType("HostId", int)
NetworkId = NewType("NetworkId", int)
UserId = NewType("UserId", int)

#: The largest id, or any integer, the store keeps (a signed 64-bit column).
INT_MAX = 2**63 - 1
