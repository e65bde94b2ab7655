"""Capped log files (``runtime/logcap.py``) with real writers holding them open: one that
appends (``O_APPEND``, as dnsmasq, qemu's console and every daemon log of ``tashi-cluster``) and
one that does not (qemu's ``-D`` log), on this machine's file system (holes and ``SEEK_DATA``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tashi.runtime import logcap
from tashi.runtime.logcap import LogCap

KIB = 1024
LIMIT = 64 * KIB


def line(n: int, size: int = KIB) -> bytes:
    return f"line {n} ".encode().ljust(size - 1, b".") + b"\n"


def test_a_log_under_the_cap_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(line(0) * 64)  # exactly the cap
    assert not logcap.cap(path, LIMIT)
    assert path.stat().st_size == LIMIT
    assert not (tmp_path / "a.log.1").exists()
    assert not logcap.cap(tmp_path / "gone.log", LIMIT)


def lines(first: int, last: int, size: int = KIB) -> bytes:
    return b"".join(line(n, size) for n in range(first, last))


def test_an_appending_writer_goes_on_at_the_start_of_the_emptied_file(tmp_path: Path) -> None:
    path = tmp_path / "dnsmasq.1.log"
    old = tmp_path / "dnsmasq.1.log.1"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, lines(0, 70))  # 70 KiB
        assert logcap.cap(path, LIMIT)
        assert old.read_bytes() == lines(6, 70)  # its newest 64 KiB
        os.write(fd, line(70))
        assert path.read_bytes() == line(70)  # at offset 0: no hole
        os.write(fd, lines(71, 140))
        assert logcap.cap(path, LIMIT)  # the one old copy is replaced
        assert old.read_bytes() == lines(76, 140)
        assert path.read_bytes() == b""
    finally:
        os.close(fd)


def test_the_old_copy_begins_with_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "tashi-cm.log"
    path.write_bytes(lines(0, 70, size=1000))  # the newest 64 KiB begin inside line 4
    assert logcap.cap(path, LIMIT)
    assert (tmp_path / "tashi-cm.log.1").read_bytes() == lines(5, 70, size=1000)
    path.write_bytes(b"x" * (LIMIT + 10))  # no line ends in it: its newest 64 KiB as they are
    assert logcap.cap(path, LIMIT)
    assert (tmp_path / "tashi-cm.log.1").read_bytes() == b"x" * LIMIT


def test_a_writer_that_does_not_append_leaves_a_hole_that_is_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "qemu.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # qemu's fopen("w")
    try:
        os.write(fd, b"x" * 99_999 + b"\n")  # not a whole number of blocks
        assert logcap.cap(path, LIMIT)
        os.write(fd, lines(0, 20, size=1000))  # at offset 100,000: a hole before it
        assert path.stat().st_size == 120_000
        assert logcap.held(path) < LIMIT  # what it holds, not its length
        assert not logcap.cap(path, LIMIT)
        os.write(fd, lines(20, 65, size=1000))
        assert logcap.cap(path, LIMIT)
        assert (tmp_path / "qemu.log.1").read_bytes() == lines(0, 65, size=1000)  # no NULs
    finally:
        os.close(fd)


def test_the_file_is_emptied_even_when_its_copy_cannot_be_made(tmp_path: Path) -> None:
    path = tmp_path / "console.log"
    path.write_bytes(line(0) * 100)
    (tmp_path / "console.log.1.new").mkdir()  # where the copy would be written
    with pytest.raises(IsADirectoryError):
        logcap.cap(path, LIMIT)
    assert path.read_bytes() == b""


def test_a_pass_caps_every_log_of_the_tree_but_where_it_is_told_not_to(tmp_path: Path) -> None:
    big = line(0) * 100
    vm = tmp_path / "vms" / "7"
    other = tmp_path / "hosts" / "host1" / "state"
    for directory in (vm, other):
        directory.mkdir(parents=True)
    for path in (vm / "console.log", vm / "qemu.pid", tmp_path / "watchdog.log", other / "x.log"):
        path.write_bytes(big)
    (vm / "small.log").write_bytes(line(1))
    (tmp_path / "link.log").symlink_to(vm / "qemu.pid")
    keeper = LogCap([tmp_path], LIMIT, skip=lambda d: d.match("hosts/*/state"))
    assert sorted(keeper.run()) == [
        tmp_path / "vms" / "7" / "console.log",
        tmp_path / "watchdog.log",
    ]
    assert (vm / "qemu.pid").read_bytes() == big  # not a log
    assert (other / "x.log").read_bytes() == big  # skipped
    assert (vm / "small.log").read_bytes() == line(1)
    assert keeper.run() == []
