"""Tashi: a cluster manager for QEMU virtual machines.

The package tree is the architecture: README.md's "The tree" is the tour, ``docs/`` (and
``docs/adr/``) says why.
"""

from __future__ import annotations

__version__ = "0.1.0"
