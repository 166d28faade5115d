"""The run's I/O pool: the threads that do its file work, below the event loop's priority."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

__all__ = ["IO_NICE", "io_pool"]

#: niceness of the I/O threads relative to the event loop's (Linux schedules threads one by
#: one). Hashing and writing 64 downloads at once on 8 threads left the loop thread a fifth of
#: a core on a 2-core machine (40-80 ms lags at start); below it, they take what it leaves.
IO_NICE = 5


def _lower_thread_priority(nice: int) -> None:
    """Run the calling thread `nice` steps below the process (Linux: a per-thread value)."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


def io_pool(threads: int = 8) -> ThreadPoolExecutor:
    """`threads` I/O threads, each IO_NICE steps below the event loop."""
    return ThreadPoolExecutor(
        max_workers=threads,
        thread_name_prefix="rpa-io",
        initializer=_lower_thread_priority,
        initargs=(IO_NICE,),
    )
