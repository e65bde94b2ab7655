"""Small real images for the image-operation tests, and a stand-in ``qemu-img``.

``sample_images`` writes a 1 MB raw image (random data in two places, holes between) and a
qcow2 converted from it with real qemu-img; ``stand_in`` writes a ``qemu-img`` that runs a shell
snippet for one verb (the output file is ``$last``) and the real qemu-img for everything else,
to make qemu-img fail, hang or wait for a flag.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

MB = 2**20


def sample_images(images: Path, sidecars: Mapping[str, bytes]) -> tuple[Path, Path]:
    """``disk.raw`` and ``disk.qcow2`` (with ``sidecars`` by suffix) in ``images``."""
    raw = images / "disk.raw"
    with raw.open("wb") as handle:
        handle.write(os.urandom(4096))
        handle.seek(MB // 2)
        handle.write(os.urandom(4096))
        handle.truncate(MB)
    qcow2 = images / "disk.qcow2"
    argv = ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)]
    subprocess.run(argv, check=True)
    for suffix, data in sidecars.items():
        (images / f"disk.qcow2{suffix}").write_bytes(data)
    return raw, qcow2


def stand_in(directory: Path, verb: str, body: str) -> str:
    """The path of a ``qemu-img`` that runs ``body`` for ``verb``, the real one otherwise."""
    script = directory / "qemu-img"
    script.write_text(
        "#!/bin/sh\n"
        "for last; do :; done\n"
        f'if [ "$1" = {verb} ]; then\n{body}\nfi\n'
        'exec qemu-img "$@"\n'
    )
    script.chmod(0o755)
    return str(script)
