"""The one seam between the image operations and ``qemu-img``: argv lists, never a shell.

``run`` starts ``qemu-img`` as an asyncio child process, so a long ``convert`` never blocks the
event loop, and kills it if the awaiting task is cancelled (nothing is left running behind a
stopped cluster manager). Every failure (the program missing, a timeout, a non-zero exit) becomes
``BackendFailure`` carrying qemu-img's own message; no ``OSError`` leaves this module.

``chain_format`` reads ``qemu-img info --output=json --backing-chain`` and refuses a backing chain
that leaves the image store: a guest can write a qcow2 header naming a host file into a raw disk,
and format probing would then read that file (see ``docs/adr/0007-host-networking-and-disks.md``).
``chain_top`` gives its size as well. ``operations.py`` uses ``run`` and ``chain_format``; the
node manager's ``disks.py`` uses ``chain_top`` for what ``qcow2chain`` (a plain qcow2 chain read
from its headers, without a child process) leaves to ``qemu-img``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tashi.domain.errors import BackendFailure, Dependency, InvalidInput, InvalidState

log = logging.getLogger(__name__)

QEMU_IMG = "qemu-img"
INFO_TIMEOUT = 60.0  # seconds; ``info`` reads headers only, but a hung NFS server never answers


async def run(args: Sequence[str], *, program: str = QEMU_IMG, timeout: float | None) -> str:
    """Run ``program *args``; its standard output. ``timeout=None`` waits as long as it takes."""
    argv = [program, *args]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        message = f"{program} {args[0]} could not run: {exc}"
        raise BackendFailure(message, failed=Dependency.subprocess) from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError as exc:
        await _kill(proc)
        message = f"qemu-img {args[0]} did not finish within {timeout} s"
        raise BackendFailure(message, failed=Dependency.subprocess) from exc
    except asyncio.CancelledError:
        await _kill(proc)  # the child must not outlive a stopped operation
        raise
    if proc.returncode != 0:
        message = " ".join(err.decode(errors="replace").split()) or f"status {proc.returncode}"
        raise BackendFailure(f"qemu-img {args[0]} failed: {message}", failed=Dependency.subprocess)
    return out.decode(errors="replace")


async def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await asyncio.shield(proc.wait())


async def inspect(image: Path, store_root: Path, *, program: str = QEMU_IMG) -> str:
    """The format of ``image``, after checking that its backing chain stays in ``store_root``.

    Without ``--force-share``: an image some QEMU process writes is refused (``InvalidState``)
    rather than read while it changes."""
    args = ["info", "--output=json", "--backing-chain", str(image)]
    try:
        out = await run(args, program=program, timeout=INFO_TIMEOUT)
    except BackendFailure as exc:
        if "lock" not in exc.message:
            raise
        # qemu-img's words name the image's path: the log has them, the caller the name
        log.info("image %s is locked: %s", image.name, exc.message)
        raise InvalidState(f"image {image.name!r} is being written by a running VM") from None
    return chain_format(out, image.name, store_root)


@dataclass(frozen=True, slots=True)
class ChainTop:
    """The image itself, as the first layer of ``qemu-img info --backing-chain`` gives it."""

    format: str
    size: int  # its virtual size in bytes


def chain_top(info_json: str, name: str, store_root: Path) -> ChainTop:
    """The format and size of the first image in ``qemu-img info --backing-chain`` output;
    ``InvalidInput`` if a backing file of the chain lies outside ``store_root`` (a resolved
    directory)."""
    try:
        chain = json.loads(info_json)
        top = ChainTop(str(chain[0]["format"]), int(chain[0]["virtual-size"]))
        backing = [Path(str(layer["filename"])) for layer in chain[1:]]
    except (ValueError, LookupError, TypeError) as exc:
        message = f"qemu-img info gave no format for {name!r}"
        raise BackendFailure(message, failed=Dependency.subprocess) from exc
    for path in backing:
        guard_backing(path, name, store_root)
    return top


def guard_backing(path: Path, name: str, store_root: Path) -> None:
    """``InvalidInput`` if ``path``, a backing file of image ``name``, resolves to a place
    outside ``store_root`` (a resolved directory)."""
    resolved = path.resolve()
    if store_root not in resolved.parents:
        raise InvalidInput(f"image {name!r} has a backing file outside the image store: {resolved}")


def chain_format(info_json: str, name: str, store_root: Path) -> str:
    """``chain_top``'s format."""
    return chain_top(info_json, name, store_root).format
