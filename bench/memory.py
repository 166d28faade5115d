"""Memory over a long run: the main process's RSS at 10% and at 100% of a 20,000-job run.

    .venv/bin/python -m bench.memory                      # this code, 20,000 jobs, pdfium
    .venv/bin/python -m bench.memory --ref ea327df        # and an older commit, side by side

Every structure of a run is meant to be bounded by design (a lag histogram, not a list of every
sample; rates that drop what leaves their window; a bounded list of notices). This runs the
real CLI (`rpa run --extractor pdfium --workers 200`) over 20,000 jobs (the 32 real papers of
../shared/corpus/real under 625 names each) from a loopback mirror (nginx, else rpa's own),
and samples the main process's VmRSS from /proc twice a second and the queue's done count
once a second. `--ref REV` runs an older commit the same way (a `git worktree` of it, on this
venv's packages) right after, on the same machine, so the two can be compared. No request
leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PY, REPO, clean_env, load_papers, machine_info, make_items
from bench.server import Server

__all__ = ["main"]


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _done(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT count(*) FROM jobs WHERE stage = 'done'").fetchone()
            return int(row[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _one_run(code: Path, ids: Path, template: str, work: Path, jobs: int) -> dict[str, Any]:
    """Run rpa (the package at `code`) over `ids`; sample RSS and progress as it goes."""
    db, out = work / "rpa.db", work / "out"
    args = [PY, "-m", "rpa", "run", str(ids), "--db", str(db), "--out", str(out),
            "--pdf-url", template, "--extractor", "pdfium", "--workers", "200",
            "--no-progress", "--min-free-mb", "0"]  # fmt: skip
    env = {**clean_env(), "PYTHONPATH": str(code)}
    samples: list[tuple[float, int, int]] = []  # (seconds, rss kB, done)
    start = time.monotonic()
    with (work / "run.log").open("wb") as log:
        proc = subprocess.Popen(args, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        done, next_count, hwm = 0, 0.0, 0
        while proc.poll() is None:
            now = time.monotonic() - start
            if now >= next_count:
                done, next_count = _done(db), now + 1.0
            rss = _status_kb(proc.pid, "VmRSS")
            hwm = max(hwm, _status_kb(proc.pid, "VmHWM") or 0)
            if rss is not None:
                samples.append((now, rss, done))
            time.sleep(0.5)  # a sampling interval, not an ordering of events
    wall = time.monotonic() - start
    final = _done(db)

    def rss_at(fraction: float) -> float | None:
        target = math.ceil(jobs * fraction)
        hits = [rss for _, rss, d in samples if d >= target]
        return round(hits[0] / 1024, 1) if hits else None

    return {
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "done": final,
        "papers_per_s": round(final / wall, 2),
        "rss_mb_at_10pct": rss_at(0.10),
        "rss_mb_at_50pct": rss_at(0.50),
        "rss_mb_at_100pct": rss_at(1.0) or (round(samples[-1][1] / 1024, 1) if samples else None),
        "peak_rss_mb": round(hwm / 1024, 1),
        "samples": len(samples),
        "lag_samples_a_list_would_hold": int(wall * 100),  # the probe wakes every 10 ms
        "series": [
            (round(t, 1), round(r / 1024, 1), d)
            for t, r, d in samples[:: max(1, len(samples) // 60)]
        ],
    }


def _worktree(ref: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), ref],
                   check=True, capture_output=True)  # fmt: skip
    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--ref", action="append", default=[], help="also run this commit")
    parser.add_argument("--server", default="auto", choices=("auto", "nginx", "python"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    papers = load_papers()
    if not papers:
        raise SystemExit("bench: ../shared/corpus/real is not here")
    scratch = Path(tempfile.mkdtemp(prefix="rpa-bench-mem-"))
    scratch.chmod(0o755)  # nginx's worker (another user) must reach the PDFs
    report: dict[str, Any] = {"machine": machine_info(), "jobs": args.jobs, "runs": {}}
    try:
        items = make_items(papers, math.ceil(args.jobs / len(papers)), scratch / "pdf")
        items = items[: args.jobs]
        ids = scratch / "ids.txt"
        ids.write_text("".join(f"ext:{item.name}\n" for item in items))
        with Server(scratch / "pdf", args.server) as server:
            report["server"] = server.kind
            codes = [("this code", REPO)]
            for ref in args.ref:
                codes.append((ref, _worktree(ref, scratch / f"tree-{ref}")))
            for label, code in codes:
                work = scratch / f"run-{len(report['runs'])}"
                work.mkdir()
                print(f"bench.memory: {label}: {args.jobs} jobs ...", flush=True)
                report["runs"][label] = _one_run(code, ids, server.url_template, work, args.jobs)
                print(json.dumps({k: v for k, v in report["runs"][label].items()
                                  if k != "series"}), flush=True)  # fmt: skip
    finally:
        for ref in args.ref:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(scratch / f"tree-{ref}")], capture_output=True)  # fmt: skip
        shutil.rmtree(scratch, ignore_errors=True)
    output = args.output or REPO / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-memory.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1))
    print(f"bench.memory: wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
