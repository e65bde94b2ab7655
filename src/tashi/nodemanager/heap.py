"""The C heap's free pages given back to the kernel once a VM is gone (issue 26).

A node manager's work for one VM (the start and destroy requests, the network driver's netlink
calls on their own thread, ``qemu-img`` on a worker thread) allocates and frees a few hundred KB
of C heap. glibc keeps what is freed for later use, and the free chunks of each thread's arena
are left a little more fragmented by every VM, so the heap's free part grew for a thousand VMs
before it levelled off. Measured in-process (a ``tashi-nm`` over the fake VMM and the vxlan
driver, started and destroyed through its HTTP API): from VM 250 to 1,000 the memory in use
(``mallinfo2`` ``uordblks``) grew by 21 KB and the live Python objects by 68, while the free
bytes glibc kept (``fordblks``) grew by 2.4 MB and the RSS by 3.6 MB; ``malloc_trim`` then
gave 5.1 MB back. So the node service calls ``trim`` after each VM's clean-up, on a worker
thread: it returns the whole free pages of every arena (2 to 12 ms here for a heap of that
size; the first call returns the most).

Where the C library has no ``malloc_trim`` (musl, other systems), ``trim`` does nothing.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from typing import cast


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    function = getattr(libc, "malloc_trim", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return cast(Callable[[int], int], function)


def trim() -> bool:
    """Give the C heap's free pages back to the kernel; whether any were (``False`` also
    where there is no ``malloc_trim``)."""
    function = _malloc_trim()
    return bool(function(0)) if function is not None else False
