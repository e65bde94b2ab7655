"""The NoCloud seed: an ISO 9660 volume labelled cidata holding meta-data and user-data (read
back with isoinfo), made only for the VMs that want one, and attached read-only after their own
disks by the node service."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from tashi.nodemanager.metadata import nocloud
from tashi.nodemanager.metadata.guests import Guest
from tashi.nodemanager.metadata.nocloud import Seeds
from tests.nodemanager.metadata.guests import KEY, SINCE, SITE, USER_DATA, guest, instance

needs_tools = pytest.mark.skipif(
    shutil.which("genisoimage") is None or shutil.which("isoinfo") is None,
    reason="Debian's genisoimage package (scripts/bootstrap.sh installs it)",
)


def read(iso: Path, name: str) -> bytes:
    return subprocess.run(
        ["isoinfo", "-R", "-i", str(iso), "-x", f"/{name}"], capture_output=True, check=True
    ).stdout


@needs_tools
def test_the_seed_holds_meta_data_and_user_data_under_the_label_cidata(tmp_path: Path) -> None:
    disk = Seeds(default=True).make(guest(42), tmp_path)
    assert disk is not None and disk.read_only and disk.format == "raw"
    assert disk.path == tmp_path / nocloud.SEED
    volume = subprocess.run(
        ["isoinfo", "-d", "-i", str(disk.path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Volume id: cidata" in volume
    meta = read(disk.path, "meta-data").decode()
    assert meta.splitlines()[:2] == ["instance-id: i-0000000000000002a", "local-hostname: vm42"]
    assert f'  - "{KEY}"' in meta
    assert read(disk.path, "user-data") == USER_DATA


@needs_tools
def test_without_user_data_the_file_is_there_and_empty(tmp_path: Path) -> None:
    disk = Seeds(default=True).make(guest(43, launched=False), tmp_path)
    assert disk is not None
    assert read(disk.path, "user-data") == b""
    assert "public-keys" not in read(disk.path, "meta-data").decode()


def test_the_hint_decides_for_one_vm_the_option_for_the_others() -> None:
    plain = instance(42)
    wants = dataclasses.replace(plain, hints={"nocloud": "true"})
    refuses = dataclasses.replace(plain, hints={"nocloud": "no"})
    assert not Seeds(default=False).wanted(plain) and Seeds(default=True).wanted(plain)
    assert Seeds(default=False).wanted(wants) and not Seeds(default=True).wanted(refuses)


def test_a_vm_that_wants_none_gets_none(tmp_path: Path) -> None:
    bare = Guest(instance(44, launched=False), 0, SITE, SINCE)
    assert Seeds(default=False).make(bare, tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_is_not_plain_is_quoted() -> None:
    odd = dataclasses.replace(instance(45), name="web: one")
    assert 'local-hostname: "web: one"' in nocloud.meta_data(Guest(odd, 0, SITE, SINCE))
