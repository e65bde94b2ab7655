"""The node manager's per-VM directories: ``<stateDir>/vms/<instanceId>/``.

Each holds ``instance.json`` (the instance as the cluster manager sent it, kept in the node
API's wire form through ``nodeapi.convert``) beside whatever the VMM driver keeps there
(sockets, serial log, its own state file), and, while a resumed VM is being restored,
``restoring`` (the suspend file's name). The directories are the node manager's
memory across restarts: what exists here is what it re-attaches to, and a restore it finds
there is finished.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tashi.domain.errors import BackendFailure, Dependency
from tashi.domain.ids import InstanceId
from tashi.domain.models import Instance
from tashi.nodeapi import convert

_INSTANCE = "instance.json"
_RESTORING = "restoring"


@dataclass(frozen=True, slots=True)
class VmDirs:
    root: Path  # <stateDir>/vms

    def of(self, instance_id: InstanceId) -> Path:
        return self.root / str(int(instance_id))

    def create(self, instance: Instance) -> Path:
        path = self.of(instance.id)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path / (_INSTANCE + ".new")
        tmp.write_text(convert.instance_json(instance))
        os.replace(tmp, path / _INSTANCE)
        return path

    def restoring(self, instance_id: InstanceId, source: str | None = None) -> str | None:
        """The suspend file the VM is being restored from (``None``: it is not); with
        ``source``, record it first (the name only, ``.`` for none)."""
        marker = self.of(instance_id) / _RESTORING
        if source is not None:
            marker.write_text(source)
        try:
            name = marker.read_text().strip()
        except OSError:
            return None
        return name if name not in ("", ".") else None

    def instance(self, instance_id: InstanceId) -> Instance | None:
        try:
            return convert.instance_from_json((self.of(instance_id) / _INSTANCE).read_text())
        except (OSError, ValueError):
            return None

    def existing(self) -> dict[InstanceId, Path]:
        """The VM directories left by earlier runs, by instance id."""
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return {}
        return {InstanceId(int(p.name)): p for p in entries if p.is_dir() and p.name.isdigit()}

    def remove(self, instance_id: InstanceId) -> None:
        try:
            shutil.rmtree(self.of(instance_id))
        except FileNotFoundError:
            return
        except OSError as exc:
            message = f"cannot remove the directory of VM {instance_id}: {exc}"
            raise BackendFailure(message, failed=Dependency.file_system) from exc
