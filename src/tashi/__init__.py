"""Tashi: a cluster manager for QEMU virtual machines.

The package tree is the architecture; see ``docs/architecture.md`` for a tour.
"""

from __future__ import annotations

__version__ = "0.1.0"
