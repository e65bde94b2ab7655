"""The NoCloud seed disk: the instance's metadata on a small ISO 9660 volume labelled ``cidata``.

For images that cannot reach 169.254.169.254 (no route to it, no network at first boot) or whose
cloud-init is set to NoCloud. The disk holds ``meta-data`` (``instance-id``, ``local-hostname``
and, with a key pair, ``public-keys``) and ``user-data`` (the user data as given, empty without
any), as cloud-init's NoCloud datasource reads them; it is attached read-only after the VM's own
disks (a virtio disk: ``/dev/vdb`` in a guest with one disk) and deleted with the VM's directory.

Opt-in: ``[NodeManager] nocloud = True`` gives every VM one; the instance hint ``nocloud``
(``true``/``false``) decides for one VM (``tashi createVm --hints nocloud=true``). A migrated or
restored VM gets the same disk again on its new host (it is made from the instance, and a
read-only disk is not part of QEMU's block migration).

``genisoimage`` (Debian's package of that name) writes the volume as any user: no mount, no root.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from tashi.domain.errors import BackendFailure, Dependency
from tashi.domain.models import Instance
from tashi.nodemanager.metadata import tree
from tashi.nodemanager.metadata.guests import Guest
from tashi.vmm.base import DiskSpec

HINT = "nocloud"
LABEL = "cidata"
SEED = "nocloud-seed.iso"
TIMEOUT = 30.0
_PLAIN = re.compile(r"[A-Za-z0-9._-]+")
_YES, _NO = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class Seeds:
    def __init__(self, *, default: bool, genisoimage: str | None = None) -> None:
        self.default = default
        self._program = genisoimage or shutil.which("genisoimage") or "/usr/bin/genisoimage"

    def wanted(self, instance: Instance) -> bool:
        value = instance.hints.get(HINT, "").strip().lower()
        if value in _YES:
            return True
        if value in _NO:
            return False
        return self.default

    def make(self, guest: Guest, directory: Path) -> DiskSpec | None:
        """The seed of ``guest``'s instance in ``directory`` (made again if there), or ``None``
        when the instance wants none."""
        if not self.wanted(guest.instance):
            return None
        files = directory / "nocloud"
        files.mkdir(parents=True, exist_ok=True)
        (files / "meta-data").write_text(meta_data(guest))
        (files / "user-data").write_bytes(tree.user_data(guest) or b"")
        out = directory / SEED
        argv = [self._program, "-quiet", "-output", str(out), "-volid", LABEL, "-joliet", "-rock"]
        _run([*argv, str(files / "user-data"), str(files / "meta-data")])
        return DiskSpec(path=out, format="raw", interface="virtio", read_only=True)


def meta_data(guest: Guest) -> str:
    """NoCloud's ``meta-data`` (YAML; a value that is not plain is written as JSON, which YAML
    reads)."""
    lines = [
        f"instance-id: {_value(guest.instance_id)}",
        f"local-hostname: {_value(guest.instance.name)}",
    ]
    launch = guest.launch
    if launch is not None and launch.public_key:
        lines += ["public-keys:", f"  - {json.dumps(launch.public_key.strip())}"]
    return "\n".join(lines) + "\n"


def _value(text: str) -> str:
    return text if _PLAIN.fullmatch(text) else json.dumps(text)


def _run(argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendFailure(
            f"cannot make a NoCloud seed: {exc} (Debian's genisoimage package)",
            failed=Dependency.subprocess,
        ) from exc
    if done.returncode != 0:
        detail = " ".join(done.stderr.split())[:500]
        raise BackendFailure(f"genisoimage failed: {detail}", failed=Dependency.subprocess)
