"""The initramfs writer: GNU cpio reads back what ``tashi.guestimage.cpio`` writes."""

from __future__ import annotations

import gzip
import io
import subprocess
from pathlib import Path

from tashi.guestimage import cpio


def _archive(entries: list[cpio.Entry]) -> bytes:
    out = io.BytesIO()
    cpio.write(entries, out)
    return out.getvalue()


def _cpio(args: list[str], archive: bytes) -> str:
    done = subprocess.run(["cpio", *args], input=archive, capture_output=True, check=True)
    return done.stdout.decode()


def test_gnu_cpio_lists_every_member_with_its_type() -> None:
    archive = _archive(
        [
            cpio.directory("bin"),
            cpio.regular("bin/busybox", b"\x7fELF...", 0o755),
            cpio.symlink("bin/sh", "/bin/busybox"),
            cpio.directory("dev"),
            cpio.char_device("dev/console", 5, 1),
            cpio.regular("init", b"#!/bin/sh\n", 0o755),
        ]
    )
    assert len(archive) % 4 == 0
    assert _cpio(["-it", "--quiet"], archive).split() == [
        "bin", "bin/busybox", "bin/sh", "dev", "dev/console", "init",
    ]  # fmt: skip
    listing = _cpio(["-itv", "--quiet"], archive).splitlines()
    # "lrwxrwxrwx 1 root root 12 Jan 1 1970 bin/sh -> /bin/busybox": the name is before "->".
    modes = {line.split(" -> ")[0].split()[-1]: line[:10] for line in listing}
    assert modes["bin"] == "drwxr-xr-x"
    assert modes["bin/busybox"] == "-rwxr-xr-x"
    assert modes["bin/sh"] == "lrwxrwxrwx"
    assert modes["dev/console"] == "crw-------"
    assert all(" root " in line for line in listing)


def test_file_contents_survive_the_round_trip() -> None:
    data = bytes(range(256)) * 3 + b"odd"  # a length that needs padding
    archive = _archive([cpio.regular("blob", data), cpio.regular("after", b"x")])
    done = subprocess.run(
        ["cpio", "-i", "--to-stdout", "--quiet", "blob"], input=archive, capture_output=True
    )
    assert done.stdout == data


def test_entries_from_a_tree_are_sorted_parents_first(tmp_path: Path) -> None:
    (tmp_path / "etc" / "init.d").mkdir(parents=True)
    (tmp_path / "etc" / "init.d" / "rcS").write_text("#!/bin/sh\n")
    (tmp_path / "etc" / "init.d" / "rcS").chmod(0o755)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "sh").symlink_to("/bin/busybox")
    entries = cpio.entries_from_tree(tmp_path)
    assert [e.name for e in entries] == ["bin", "bin/sh", "etc", "etc/init.d", "etc/init.d/rcS"]
    assert entries[1].data == b"/bin/busybox"
    assert entries[4].mode & 0o777 == 0o755


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    entries = [cpio.directory("d"), cpio.regular("d/f", b"same")]
    cpio.write_gzip(entries, tmp_path / "a")
    cpio.write_gzip(entries, tmp_path / "b")
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert gzip.decompress((tmp_path / "a").read_bytes()) == _archive(entries)
