"""Does rpa need a CPU throttle? What other programs keep of the CPU while rpa extracts.

    .venv/bin/python -m bench.cpu_share [--seconds 20] [--repeat 3]

"Other programs": one busy loop per core at niceness 0, counting iterations for `--seconds`.
Alone first, then while rpa extracts (pypdf, one extraction process per core at rpa's default
`--extract-nice` 10, papers from nginx on 127.0.0.1), interleaved. The share the busy loops keep
is their iterations with rpa over without; rpa's own loop lag and throughput in the same
window come from its summary. The seed design's "throttle at 85% CPU" would keep 15% of the
machine for others; this says what niceness alone leaves them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PY, REPO, clean_env, load_papers, machine_info, make_items
from bench.server import Server

__all__ = ["main"]


def _spin(seconds: float, out: Any) -> None:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(10_000):
            n += 1
    out.put(n)


def _others(seconds: float) -> int:
    """Iterations of one busy loop per core at niceness 0 over `seconds`."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_spin, args=(seconds, out)) for _ in range(os.cpu_count() or 1)]
    for p in procs:
        p.start()
    total = sum(int(out.get()) for _ in procs)
    for p in procs:
        p.join()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_share")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="rpa-bench-cpu-"))
    scratch.chmod(0o755)
    items = make_items(load_papers(), 40, scratch / "pdf")  # more than a window's worth
    ids = scratch / "ids.txt"
    ids.write_text("".join(f"ext:{i.name}\n" for i in items))
    shares, lags = [], []
    report: dict[str, Any] = {"machine": machine_info(), "runs": []}
    with Server(scratch / "pdf") as server:
        for rep in range(args.repeat):
            alone = _others(args.seconds)
            work = scratch / f"run-{rep}"
            work.mkdir()
            rpa = subprocess.Popen(
                [PY, "-m", "rpa", "run", str(ids), "--db", str(work / "q.db"), "--out",
                 str(work / "out"), "--pdf-url", server.url_template, "--no-progress",
                 "--log-format", "json", "--min-free-mb", "0"],
                cwd=work, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(3.0)  # past rpa's start-up: its extraction processes are busy
            shared = _others(args.seconds)
            rpa.terminate()
            out, _ = rpa.communicate(timeout=120)
            summary: dict[str, Any] = next(
                (json.loads(x) for x in out.decode().splitlines() if '"event": "summary"' in x),
                {},
            )
            share = shared / alone
            shares.append(share)
            lags.append(summary.get("lag_p99_ms"))
            report["runs"].append({"alone": alone, "with_rpa": shared, "share": share,
                                   "rpa_done": summary.get("done"),
                                   "rpa_lag_p99_ms": summary.get("lag_p99_ms"),
                                   "rpa_lag_max_ms": summary.get("lag_max_ms")})  # fmt: skip
            print(json.dumps(report["runs"][-1]), flush=True)
    report["median_share"] = statistics.median(shares)
    output = (
        args.output or REPO / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-cpu-share.json"
    )
    output.write_text(json.dumps(report, indent=1))
    print(
        f"other programs kept {report['median_share']:.0%} of their CPU (median of {args.repeat})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
