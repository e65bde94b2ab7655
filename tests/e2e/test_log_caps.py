"""A real ``tashi-nm`` keeps the logs of its state directory under ``[Logging] maxLogSize``: its
watchdog's output (which the watchdog appends to, as qemu appends to a VM's console log),
grown past the cap, moves to ``watchdog.log.1`` (its newest 64 KiB) and the file starts
again."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.harness import Cluster, wait_for

CAP = 65536  # the smallest cap allowed


def test_a_node_manager_caps_its_watchdogs_log(tmp_path: Path) -> None:
    vfs = tmp_path / "vfs"
    (vfs / "images").mkdir(parents=True)
    c = Cluster.start(tmp_path, vfs)
    try:
        c.add_node("n1", extra={"Logging": {"maxLogSize": CAP}})
        log = c.state_dir("n1") / "watchdog.log"
        wait_for("the watchdog's log", log.exists)
        lines = b"".join(f"line {n}\n".encode() for n in range(10_000))  # 88,890 bytes
        with log.open("ab") as out:
            out.write(lines)
        old = log.with_name("watchdog.log.1")
        wait_for("the log to be capped", old.exists, timeout=30)
        kept = old.read_bytes()  # the newest lines, as many as the cap holds
        assert lines.endswith(kept) and CAP - 20 < len(kept) <= CAP
        assert log.stat().st_size < CAP
    finally:
        c.stop()
