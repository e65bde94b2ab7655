"""``python -m tashi.devcluster.enter NETNS -- PROGRAM ARGS...``: run a program in a network
namespace of ``/run/netns`` (what ``ip netns exec`` does, through pyroute2, without its
``/sys`` remount, which Tashi's daemons do not need).

The devcluster starts each virtual host's node manager this way; the QEMU processes the node
manager starts inherit the namespace, so its taps, bridges and VXLAN devices are the host's own.
"""

from __future__ import annotations

import os
import sys

from pyroute2 import netns


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 3 or args[1] != "--":
        print("usage: python -m tashi.devcluster.enter NETNS -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    name, command = args[0], args[2:]
    try:
        netns.setns(name, flags=0)  # flags=0: never create it
    except OSError as exc:
        print(f"tashi-enter: cannot join network namespace {name}: {exc}", file=sys.stderr)
        return 1
    try:
        os.execv(command[0], command)
    except OSError as exc:
        print(f"tashi-enter: cannot run {command[0]}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
