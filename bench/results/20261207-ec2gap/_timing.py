"""TEMPORARY timing marks (ec2gap investigation; never committed)."""

from __future__ import annotations

import os
import time

_PATH = "/tmp/ec2gap-timing.log"


def mark(what: str, *args: object) -> None:
    if not os.path.exists(_PATH):
        return
    with open(_PATH, "a") as f:
        f.write(f"{time.time():.6f} {os.getpid()} {what} {' '.join(map(str, args))}\n")
