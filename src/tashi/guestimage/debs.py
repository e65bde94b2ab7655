"""Debian packages for the guest: resolve, download once into a cache, unpack without installing.

``apt-get download`` fetches a ``.deb`` without installing it (no root needed), ``dpkg-deb -x``
unpacks it into a directory. The cache keeps one file per (package, version), so a rebuild of the
same versions downloads nothing; ``apt-get update`` runs only when apt does not know a package,
which on a fresh machine means its package lists are missing.

Used by ``tashi.guestimage.builder``; programs run through ``tashi.guestimage.commands``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tashi.domain.errors import BackendFailure
from tashi.guestimage.commands import run

KERNEL_META = "linux-image-cloud-amd64"
SOURCE_META = "linux-source"  # depends on the versioned source package, linux-source-6.1
BUSYBOX = "busybox-static"


@dataclass(frozen=True, slots=True)
class Deb:
    package: str
    version: str
    path: Path
    downloaded: bool


class Apt:
    """apt, as the builder needs it: a cache directory and a way to report what it does."""

    def __init__(self, cache: Path, say: Callable[[str], None]) -> None:
        self.cache = cache
        self.say = say
        self._updated = False

    def fetch(self, package: str) -> Deb:
        """The ``.deb`` of the candidate version of ``package``, from the cache or downloaded."""
        version = self._candidate(package)
        cached = self._cached(package, version)
        if cached is not None:
            return Deb(package, version, cached, downloaded=False)
        self.cache.mkdir(parents=True, exist_ok=True)
        # Download beside the cache and move in: an interrupted download never looks cached.
        with tempfile.TemporaryDirectory(dir=self.cache, prefix=".download-") as partial:
            run([*self._apt_get(), "download", f"{package}={version}"], cwd=Path(partial))
            (found,) = Path(partial).glob("*.deb")
            target = self.cache / found.name
            os.replace(found, target)
        return Deb(package, version, target, downloaded=True)

    def kernel_package(self) -> str:
        """The versioned kernel package the meta package depends on (``linux-image-6.1.0-…``)."""
        return self._dependency(KERNEL_META, "linux-image-")

    def source_package(self) -> str:
        """The versioned kernel source package (``linux-source-6.1``)."""
        return self._dependency(SOURCE_META, "linux-source-")

    def _dependency(self, meta: str, prefix: str) -> str:
        self._candidate(meta)  # updates the lists if apt does not know the package yet
        out = run(["apt-cache", "depends", "--no-recommends", "--no-suggests", meta])
        for line in out.splitlines():
            kind, _, name = line.strip().lstrip("|").partition(":")
            name = name.strip()
            if kind == "Depends" and name.startswith(prefix) and name != meta:
                return name
        raise BackendFailure(f"{meta} depends on no {prefix}* package:\n{out}")

    def _candidate(self, package: str) -> str:
        version = self._policy_candidate(package)
        if version is None and not self._updated:
            self.say("apt does not know " + package + ": running apt-get update")
            run([*self._apt_get(), "update", "-qq"])
            self._updated = True
            version = self._policy_candidate(package)
        if version is None:
            raise BackendFailure(f"apt has no installable version of {package}")
        return version

    @staticmethod
    def _policy_candidate(package: str) -> str | None:
        out = run(["apt-cache", "policy", package])
        for line in out.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "Candidate":
                value = value.strip()
                return None if value in ("", "(none)") else value
        return None

    def _cached(self, package: str, version: str) -> Path | None:
        # apt-get download writes the epoch's colon as %3a: busybox-static_1%3a1.35.0-4_amd64.deb
        quoted = version.replace(":", "%3a")
        matches = sorted(self.cache.glob(f"{package}_{quoted}_*.deb"))
        return matches[0] if matches else None

    @staticmethod
    def _apt_get() -> list[str]:
        argv = ["apt-get", "-q"]
        if os.geteuid() == 0:
            # As root apt drops to the _apt user, who may not write the cache: stay root instead.
            argv += ["-o", "APT::Sandbox::User=root"]
        return argv


def unpack(deb: Path, target: Path) -> Path:
    """Unpack ``deb`` (``dpkg-deb -x``) into the empty or new directory ``target``."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    run(["dpkg-deb", "-x", deb, target])
    return target
