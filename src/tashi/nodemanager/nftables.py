"""The one seam to nftables: a script run as one transaction, in this process's network
namespace, by libnftables loaded in the process, or by the ``nft`` program where the library
cannot be loaded.

Why in the process: ``nft -f -`` costs 5-20 ms a run on this project's machines (a process
started, its libraries linked, the ruleset read), most of it before the kernel sees the
transaction; libnftables does the same work in well under a millisecond (measured in
``docs/ec2.md``). The node manager runs a transaction at every start of a VM that is in security
groups (``secgroups``) and of every VM the metadata service serves (``metadata``), so that cost
sat on every VM's way to Running. Both are libnftables's own parser on the same text: the
library (Debian's ``libnftables1``) is the ``nft`` program's, and comes with it.

A libnftables context is not safe to share between threads: one context per process, used
under a lock (callers run ``run`` in a worker thread, ``asyncio.to_thread``). It keeps a cache
of the ruleset, which it reads again whenever the kernel's ruleset generation moved (another
process's change included). Failures leave as ``BackendFailure`` with what was being done and
nftables's message, as the program's would.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import subprocess
import threading

from tashi.domain.errors import BackendFailure, Dependency

log = logging.getLogger(__name__)

LIBRARY = "libnftables.so.1"
NFT_TIMEOUT = 10.0  # seconds the nft program may take (the library call has no timeout)


class _Library:
    """libnftables's five calls this module needs, with their C types."""

    def __init__(self, name: str) -> None:
        lib = ctypes.CDLL(name)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        context = lib.nft_ctx_new(0)  # NFT_CTX_DEFAULT
        if not context:
            raise OSError("nft_ctx_new failed")
        # Output and errors into buffers (read after each run), never onto our stdout.
        if lib.nft_ctx_buffer_output(context) or lib.nft_ctx_buffer_error(context):
            raise OSError("libnftables cannot buffer its output")
        self._lib = lib
        self._context = context
        self._lock = threading.Lock()

    def run(self, script: str) -> str | None:
        """``None`` once done; otherwise nftables's error message."""
        with self._lock:
            failed = self._lib.nft_run_cmd_from_buffer(self._context, script.encode())
            # Reading a buffer empties it for the next run (libnftables's get_buffer).
            self._lib.nft_ctx_get_output_buffer(self._context)
            error = self._lib.nft_ctx_get_error_buffer(self._context) or b""
        if failed == 0:
            return None
        return error.decode(errors="replace") or f"libnftables returned {failed}"


class _Once:
    """The process's context, made on first use (``library``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tried = False
        self._library: _Library | None = None

    def library(self) -> _Library | None:
        """``None`` when libnftables cannot be loaded (logged once): the ``nft`` program
        serves instead."""
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._library = _Library(LIBRARY)
                except (OSError, AttributeError) as exc:
                    log.warning("libnftables not loaded (%s): nftables is run as nft -f -", exc)
            return self._library


_ONCE = _Once()


INLINE_BYTES = 16384  # a script this long or shorter runs in the event loop (``run_soon``)


async def run_soon(binary: str, script: str, what: str) -> None:
    """``run`` from the event loop. A short script (a VM's chains, a policy change: well
    under a millisecond in libnftables) runs in the loop itself: a worker thread's hop cost
    more than the transaction on a busy machine (the interpreter hands its lock over every
    5 ms). A long one (a restore of every VM's chains) and the ``nft`` program run in a
    worker thread."""
    if len(script) <= INLINE_BYTES and _ONCE.library() is not None:
        run(binary, script, what)
    else:
        await asyncio.to_thread(run, binary, script, what)


def run(binary: str, script: str, what: str) -> None:
    """Run ``script`` (nftables's text) as one transaction; ``what`` says what it does, for the
    error. ``binary``: the ``nft`` program, used only without the library. Blocking."""
    library = _ONCE.library()
    if library is None:
        _run_program(binary, script, what)
        return
    error = library.run(script)
    if error is not None:
        detail = " ".join(error.split())[:500]
        raise BackendFailure(f"{what}: nft said: {detail}", failed=Dependency.subprocess)


def _run_program(binary: str, script: str, what: str) -> None:
    try:
        done = subprocess.run(
            [binary, "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendFailure(f"{what}: nft failed: {exc}", failed=Dependency.subprocess) from exc
    if done.returncode != 0:
        detail = " ".join(done.stderr.split())[:500]
        raise BackendFailure(f"{what}: nft said: {detail}", failed=Dependency.subprocess)
