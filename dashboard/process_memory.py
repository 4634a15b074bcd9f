"""The C allocator's share of a threaded process's memory.

glibc's malloc gives a thread that finds the arenas in use busy one of its own, up to 8 per core,
and memory freed in an arena is reused by that arena only. The poller allocates on many threads
(its accounts' polls, their retrieves and every upstream call's thread), so each arena came to hold
its own peak: about 9 MiB more than with two arenas, with 40 accounts (bench/poller_memory.py),
for no measurable cost in time (its threads mostly wait on upstreams, and CPython's GIL lets one
of them allocate at a time anyway).
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
POLLER_ARENAS = 2


def limit_malloc_arenas(count: int = POLLER_ARENAS) -> bool:
    """What MALLOC_ARENA_MAX=count at start would do, for the arenas made from now on (call it
    before starting threads). An operator's own MALLOC_ARENA_MAX wins. False where it did nothing:
    not glibc (musl has a single arena anyway), or MALLOC_ARENA_MAX set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, count) == 1
