"""Lists and resolves disk images in ``<prefix>/images``, refusing anything outside it.

Direct-boot sidecars (``<image>.kernel``, ``.initrd``, ``.cmdline``, see ``boot.py``) belong
to their image and are not listed as images of their own. Format and virtual size come from the file header (qcow2 magic ``QFI\\xfb``); anything else is
reported as raw. Reading 32 bytes per image keeps ``getImages`` fast without running qemu-img.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from tashi.domain import validation
from tashi.domain.errors import InvalidInput, NotFound
from tashi.domain.models import Image
from tashi.images.boot import is_sidecar

_QCOW2_MAGIC = b"QFI\xfb"


@dataclass(frozen=True, slots=True)
class ImageStore:
    prefix: Path

    @property
    def images_dir(self) -> Path:
        return self.prefix / "images"

    def path_of(self, name: str) -> Path:
        """The file of image ``name``; ``InvalidInput`` for a path, ``NotFound`` if absent.

        A symbolic link is followed only if it stays inside the image store."""
        validation.image_name(name)
        root = self.images_dir.resolve()
        path = (root / name).resolve()
        if path.parent != root and root not in path.parents:
            raise InvalidInput(f"image {name!r} points outside the image store")
        if not path.is_file():
            raise NotFound(f"there is no image {name!r} in the image store ({self.images_dir})")
        return path

    def list(self) -> list[Image]:
        try:
            entries = sorted(os.scandir(self.images_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        images = []
        for entry in entries:
            if entry.name.startswith(".") or is_sidecar(entry.name) or not entry.is_file():
                continue
            fmt, virtual = _probe(Path(entry.path))
            images.append(
                Image(name=entry.name, size=entry.stat().st_size, format=fmt, virtual_size=virtual)
            )
        return images


def _probe(path: Path) -> tuple[str, int | None]:
    try:
        with path.open("rb") as handle:
            header = handle.read(32)
    except OSError:
        return "unknown", None
    if len(header) >= 32 and header[:4] == _QCOW2_MAGIC:
        return "qcow2", int(struct.unpack(">Q", header[24:32])[0])
    return "raw", path.stat().st_size
