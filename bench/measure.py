"""Run one command and count the CPU of its whole process tree.

    python -m bench.measure OUT.json [--pid-file F] -- CMD ARGS...

This process makes itself a child subreaper (prctl PR_SET_CHILD_SUBREAPER), so descendants
orphaned by their parent (multiprocessing's forkserver and its extraction workers, say) are
handed to it when they outlive their parent, and it reaps every process of the tree with
wait4(): each exited process's rusage (its own CPU plus what it reaped) is counted exactly once.
It also reads /proc/stat before and after: machine-wide busy CPU minus the tree's CPU is the
"foreign" CPU that other programs used meanwhile (a noise indicator, since the machine may be
shared).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
#: seconds to wait for orphans after the direct child exited, before killing them
ORPHAN_GRACE = 30.0


def _busy_seconds() -> float:
    """Machine-wide non-idle CPU seconds since boot (all cores)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _cpu(ru: Any) -> float:
    """User + system seconds of a `resource.struct_rusage` or an `os.wait4` result."""
    return float(ru.ru_utime + ru.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.measure")
    parser.add_argument("out", type=Path)
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--nice", type=int, default=0, help="niceness increment for the tree")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        parser.error("no command")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print("bench.measure: cannot become a subreaper; orphans are not counted", file=sys.stderr)
    if args.nice:
        os.nice(args.nice)  # inherited by the whole tree (negative: needs root)
    busy0 = _busy_seconds()
    start = time.monotonic()
    # The command dies with us (a benchmark stopped half-way leaves nothing running).
    child = subprocess.Popen(
        cmd, preexec_fn=lambda: libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    )
    if args.pid_file is not None:
        args.pid_file.write_text(str(child.pid))
    returncode: int | None = None
    wall = 0.0
    main_cpu = tree_cpu = 0.0
    main_rss = max_rss = 0
    deadline: float | None = None
    while True:
        try:
            pid, status, ru = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if deadline is not None and time.monotonic() > deadline:
                print("bench.measure: orphans still running; not counted", file=sys.stderr)
                break
            time.sleep(0.01)
            continue
        tree_cpu += _cpu(ru)
        max_rss = max(max_rss, ru.ru_maxrss)
        if pid == child.pid:
            wall = time.monotonic() - start
            returncode = os.waitstatus_to_exitcode(status)
            main_cpu, main_rss = _cpu(ru), ru.ru_maxrss
            deadline = time.monotonic() + ORPHAN_GRACE
    foreign = max(0.0, _busy_seconds() - busy0 - tree_cpu)
    args.out.write_text(
        json.dumps(
            {
                "returncode": returncode if returncode is not None else -1,
                "wall": wall,
                "tree_cpu": tree_cpu,
                "main_cpu": main_cpu,
                "main_maxrss_kb": main_rss,
                "max_rss_any_kb": max_rss,
                "foreign_cpu": foreign,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
