"""A driver's per-VM state file: a small JSON document in the VM's ``state_dir``.

Both drivers keep one (``qemu.json``, ``fake.json``) so that ``adopt()`` can find a VM again
after the node manager restarts: the ``VmSpec`` it was started with plus whatever the driver
needs (the QEMU driver: pid, process start time, boot id, cgroup). Written atomically (a
temporary file renamed over the old one), so a reader sees the old or the new document, never a
torn one. The spec codec lives here because both drivers share it; neither imports the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tashi.domain.ids import InstanceId
from tashi.vmm.base import BootSpec, DiskSpec, NicSpec, VmSpec

VERSION = 1


def write(path: Path, doc: Mapping[str, Any], *, durable: bool = True) -> None:
    """Write ``doc`` to ``path`` atomically (mode 0600: it names the VM's sockets); with
    ``durable`` also on disk before this returns (the fake, simulating thousands, skips that)."""
    tmp = path.with_name(f".{path.name}.new")
    data = json.dumps({"version": VERSION, **doc}, indent=1, sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read(path: Path) -> dict[str, Any] | None:
    """The document at ``path``; ``None`` when there is none or it is unreadable garbage
    (a VM whose state file cannot be read cannot be adopted either way)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        return None
    return doc


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(f".{path.name}.new").unlink(missing_ok=True)


def _opt_path(value: Path | None) -> str | None:
    return None if value is None else str(value)


def _to_path(value: object) -> Path | None:
    return None if value is None else Path(str(value))


def spec_to_json(spec: VmSpec) -> dict[str, Any]:
    return {
        "instance_id": int(spec.instance_id),
        "name": spec.name,
        "cores": spec.cores,
        "memory": spec.memory,
        "disks": [
            {
                "path": str(d.path),
                "format": d.format,
                "interface": d.interface,
                "shared": d.shared,
                "read_only": d.read_only,
                "volume": d.volume,
            }
            for d in spec.disks
        ],
        "nics": [
            {
                "mac": n.mac,
                "network": n.network,
                "tap": n.tap,
                "ifup_script": _opt_path(n.ifup_script),
                "model": n.model,
            }
            for n in spec.nics
        ],
        "state_dir": str(spec.state_dir),
        "boot": {
            "kernel": _opt_path(spec.boot.kernel),
            "initrd": _opt_path(spec.boot.initrd),
            "cmdline": spec.boot.cmdline,
        },
        "cpu_share": spec.cpu_share,
        "hints": dict(spec.hints),
    }


def spec_from_json(doc: Mapping[str, Any]) -> VmSpec:
    """The spec ``spec_to_json`` wrote; ``KeyError``/``TypeError``/``ValueError`` if it is not
    one."""
    boot = doc["boot"]
    return VmSpec(
        instance_id=InstanceId(int(doc["instance_id"])),
        name=str(doc["name"]),
        cores=int(doc["cores"]),
        memory=int(doc["memory"]),
        disks=tuple(
            DiskSpec(
                path=Path(d["path"]),
                format=str(d["format"]),
                interface=str(d["interface"]),
                shared=bool(d["shared"]),
                read_only=bool(d.get("read_only", False)),  # absent from older state files
                volume=None if d.get("volume") is None else int(d["volume"]),  # likewise
            )
            for d in doc["disks"]
        ),
        nics=tuple(
            NicSpec(
                mac=str(n["mac"]),
                network=int(n["network"]),
                tap=str(n["tap"]),
                ifup_script=_to_path(n["ifup_script"]),
                model=str(n["model"]),
            )
            for n in doc["nics"]
        ),
        state_dir=Path(doc["state_dir"]),
        boot=BootSpec(
            kernel=_to_path(boot["kernel"]),
            initrd=_to_path(boot["initrd"]),
            cmdline=None if boot["cmdline"] is None else str(boot["cmdline"]),
        ),
        cpu_share=int(doc["cpu_share"]),
        hints={str(k): str(v) for k, v in dict(doc["hints"]).items()},
    )
