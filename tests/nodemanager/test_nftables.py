"""The nftables seam (``tashi.nodemanager.nftables``): a script nftables refuses leaves as
``BackendFailure`` with what was being done and nftables's message, whether libnftables runs it
in the process or, where the library cannot be loaded, the ``nft`` program does. Only scripts
nftables refuses before it reaches the kernel are run here (the kernel side: ``secgroups``'s
and ``metadata``'s live tests, in namespaces of their own)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tashi.domain.errors import BackendFailure
from tashi.nodemanager import nftables

NFT = shutil.which("nft") or "/usr/sbin/nft"
REFUSED = "add table netdev tashi-test\nthis is not nftables"


def test_the_library_runs_in_the_process_and_says_why_it_refused() -> None:
    library = nftables._Once().library()
    assert library is not None  # Debian's libnftables1 comes with nft
    message = library.run(REFUSED)
    assert message is not None and "syntax error" in message
    with pytest.raises(BackendFailure, match=r"^making a test table: nft said: Error: syntax"):
        nftables.run("/nonexistent/nft", REFUSED, "making a test table")  # the program unused


def test_without_the_library_the_program_runs_the_script(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nftables, "LIBRARY", "libnftables-that-is-not.so.9")
    once = nftables._Once()
    assert once.library() is None
    monkeypatch.setattr(nftables, "_ONCE", once)
    with pytest.raises(BackendFailure, match=r"^making a test table: nft said: .*syntax error"):
        nftables.run(NFT, REFUSED, "making a test table")
    with pytest.raises(BackendFailure, match="nft failed"):
        nftables.run("/nonexistent/nft", REFUSED, "making a test table")


def test_from_the_event_loop_short_and_long_scripts_alike() -> None:
    """``run_soon``: a short script in the loop, a long one in a worker thread; both refused
    the same way."""
    long = REFUSED + "\n" + "# a comment\n" * (nftables.INLINE_BYTES // 10)
    for script in (REFUSED, long):
        with pytest.raises(BackendFailure, match=r"nft said: .*syntax error"):
            asyncio.run(nftables.run_soon(NFT, script, "making a test table"))
