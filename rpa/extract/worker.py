"""One extraction process: its start-up and its main loop (the child side of ExtractPool).

    child_main: ignore SIGINT/SIGTERM, exit with the parent, nice, oom_score_adj 1000, RLIMIT_AS
                loop: recv a Task ─▶ ACK ─▶ extract_pdf ─▶ result frame (+ rss_mb) ─▶ recv ...
                until STOP, or the parent's end of a pipe closes

The extractor (`rpa.extract.pdf`, which imports pypdf) is imported here, in the process that
runs it: the fork server preloads it (`context`), so each worker starts with it loaded, and the
main process of a process-mode run never imports pypdf. Thread mode loads it through
`load_extractor` too. `rss_bytes` measures a process: the worker's own figure for the parent's
recycle rule, and the memory governor's (through rpa.extract.pool).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import threading
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext

from rpa.extract.protocol import ACK, STOP, Extractor, Task, encode_result, write_all

__all__ = [
    "OOM_SCORE_ADJ", "child_main", "context", "load_extractor", "rss_bytes", "run_task", "start_up",
    "warm",
]  # fmt: skip

#: each extraction process's /proc/self/oom_score_adj: the kernel's first choice of victim
OOM_SCORE_ADJ = 1000


def load_extractor() -> Extractor:
    """rpa.extract.pdf.extract_pdf, imported where it runs: the extraction processes (preloaded
    by the fork server) or, in thread mode, the pool's constructor (before the loop runs). The
    main process of a process-mode run never imports pypdf (~55 ms of its start-up)."""
    if os.environ.get("BENCH_RPA_EXTRACTOR") == "null":  # bench.conductor only: no knob
        from rpa.extract.null import extract_null

        return extract_null
    from rpa.extract.pdf import extract_pdf

    return extract_pdf


def run_task(task: Task) -> dict[str, object]:
    """Run one task where it is received: a PDF's extraction (a tuple of `extract_pdf`'s
    arguments) or a paper's whole work (rpa.extract.paper). Never raises."""
    extract_pdf = load_extractor()
    if isinstance(task, tuple):
        return extract_pdf(*task)
    from rpa.extract.paper import work_paper

    return work_paper(task, extract_pdf)


def context() -> BaseContext:
    """ "forkserver" (its server preloads this module and the extractor), else "spawn"; never
    "fork": the parent has threads."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        # Import pypdf once in the server; each worker forks with it already loaded.
        ctx.set_forkserver_preload(["rpa.extract.worker", "rpa.extract.pdf", "rpa.extract.paper"])
        return ctx
    return multiprocessing.get_context("spawn")


def warm() -> threading.Thread | None:
    """Boot the fork server now, in a thread: its interpreter and the extractor's imports
    (~0.3 s) overlap the main process's own start-up (preparing the queue, its imports), and
    the pool's first processes fork at once when the run starts (issue 20: the pool never
    idles at the start). None where there is no fork server (spawn)."""
    if context().get_start_method() != "forkserver":
        return None

    def boot() -> None:
        with contextlib.suppress(Exception):  # the pool's first start says what is wrong
            forkserver.ensure_running()

    thread = threading.Thread(target=boot, name="rpa-forkserver", daemon=True)
    thread.start()
    return thread


def rss_bytes(pid: int) -> int:
    """Resident bytes of process `pid`; 0 for none, a zombie or pid 0."""
    if pid <= 0:
        return 0
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _exit_with_parent() -> None:
    """End this process when rpa ends, however it ends (kill -9 included).

    Only the parent enforces --extract-timeout, so an orphan would parse on, unbounded. A daemon
    thread waits on the parent's sentinel (a pipe that closes when the parent dies; no GIL held
    while waiting) and exits at once. `parent_process()` is rpa itself under spawn and
    forkserver alike.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="rpa-parent-watch", daemon=True).start()


def start_up(nice: int, max_mb: int | None) -> None:
    """The process's settings, before any task (an extraction process's, and a user
    process stage's: rpa.stages.procs)."""
    # Ctrl-C, and a SIGTERM sent to the whole process group (`timeout`, systemd, kill -TERM
    # -PGID), are the parent's to handle: it stops gracefully and then stops us. Were we to
    # die of it, each death would count against the paper we were working on.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _exit_with_parent()
    with contextlib.suppress(OSError):
        os.nice(nice)  # extraction must never starve the event loop's core
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as fh:
        # Should the kernel's OOM killer have to act, it takes an extraction process (its
        # paper is retried alone, uncounted: rpa.run.policy), never rpa, which would end the
        # run for every paper.
        fh.write(str(OOM_SCORE_ADJ))
    if max_mb:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = max_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def child_main(tasks: Connection, results: Connection, nice: int, max_mb: int | None) -> None:
    """Worker loop: receive a Task, acknowledge it, extract, send the result frame back;
    STOP (or the parent gone) ends it."""
    start_up(nice, max_mb)
    fd = results.fileno()
    while True:
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if task is STOP:
            return
        try:
            os.write(fd, ACK)  # "I have it": a death from now on is this paper's doing
        except OSError:
            return
        result = run_task(task)
        result["rss_mb"] = rss_bytes(os.getpid()) / 2**20  # for the parent's recycle rule
        try:
            write_all(fd, encode_result(result))
        except OSError:
            return
