"""Lists and resolves disk images in ``<prefix>/images``, refusing anything outside it.

Direct-boot sidecars (``<image>.kernel``, ``.initrd``, ``.cmdline``, see ``boot.py``) belong
to their image and are not listed as images of their own; nor are dot files (image locks, the
part files of image operations still running: ``operations.py``). Format and virtual size come
from the file header (qcow2 magic ``QFI\\xfb``); anything else is reported as raw. Reading 32
bytes per image keeps ``getImages`` fast without running qemu-img; ``backing_file`` reads a
qcow2 header's backing file name the same way.
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
_MAX_BACKING_NAME = 1023  # QEMU's limit for a backing file name


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
            # not where the store is: a caller names images, the server's paths are its own
            raise NotFound(f"there is no image {name!r} in the image store")
        return path

    def get(self, name: str) -> Image:
        """Image ``name`` as ``list`` shows it; the errors of ``path_of``."""
        path = self.path_of(name)
        fmt, virtual = probe(path)
        return Image(name=name, size=path.stat().st_size, format=fmt, virtual_size=virtual)

    def files(self) -> list[tuple[str, Path]]:
        """Name and path of each image file, by name: not dot files, sidecars or directories."""
        try:
            entries = sorted(os.scandir(self.images_dir), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [
            (entry.name, Path(entry.path))
            for entry in entries
            if not entry.name.startswith(".") and not is_sidecar(entry.name) and entry.is_file()
        ]

    def page(self, after: int | None = None, limit: int | None = None) -> list[tuple[int, Image]]:
        """The images with their ids (their place in name order, as getImages numbers them):
        only ids greater than ``after``, at most ``limit`` of them; only those are probed."""
        files = list(enumerate(self.files()))
        chosen = [f for f in files if after is None or f[0] > after]
        images = []
        for index, (name, path) in chosen if limit is None else chosen[:limit]:
            fmt, virtual = probe(path)
            images.append(
                (
                    index,
                    Image(name=name, size=path.stat().st_size, format=fmt, virtual_size=virtual),
                )
            )
        return images

    def list(self) -> list[Image]:
        return [image for _, image in self.page()]


def backing_file(path: Path) -> str | None:
    """The backing file a qcow2 image's header names (as written: maybe relative), else ``None``.

    Header: magic, version (4 bytes each), backing_file_offset (8), backing_file_size (4)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(20)
            if len(header) < 20 or header[:4] != _QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if offset == 0 or not 0 < size <= _MAX_BACKING_NAME:
                return None
            handle.seek(offset)
            return handle.read(size).decode(errors="replace")
    except OSError:
        return None


def probe(path: Path) -> tuple[str, int | None]:
    try:
        with path.open("rb") as handle:
            header = handle.read(32)
    except OSError:
        return "unknown", None
    if len(header) >= 32 and header[:4] == _QCOW2_MAGIC:
        return "qcow2", int(struct.unpack(">Q", header[24:32])[0])
    return "raw", path.stat().st_size
