"""PostgreSQL and the fleet: queue figures on both backends, and 1, 2, 4 rpa processes on one
PostgreSQL queue, side by side with the pdfium pool ceiling.

    .venv/bin/python -m bench.fleet                     # everything, 3 repeats
    .venv/bin/python -m bench.fleet --quick             # small sizes, 1 repeat

1. Queue: claim+complete per second (one connection; and the full job lifecycle through
   AsyncQueue from 200 coroutines) on SQLite and PostgreSQL; enqueue of 1,000,000 IDs into
   PostgreSQL; `status` on 1,000,000 jobs (in process, and `rpa status` as a new process).
2. End to end: the 32 real papers x copies on nginx (127.0.0.1), `--extractor pdfium`; P rpa
   processes started together on one PostgreSQL queue (P = 1, 2, 4; the queue filled before
   the clock starts), whole processes timed under bench.measure, and the bare pypdfium2 pool
   over the same files in the same repeat. The machine-wide CPU the database server used is
   what /proc/stat counted beyond the measured trees.

The PostgreSQL server is rpa.testing.pgserver's (the system's binaries, else the pip
fallback), with fsync off: a throwaway server, so the figures are the queue's work, not the
disk's. No request leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import PY, REPO, clean_env, load_papers, machine_info, make_items, run_measured
from bench.queue_bench import _claim_direct, _lifecycle, write_ids
from bench.server import Server
from rpa.queue import open_store, reads
from rpa.queue.enqueue import enqueue_file
from rpa.testing.pgserver import PostgresServer

__all__ = ["main"]


def _busy() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    import os

    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# ---------------------------------------------------------------------------- 1. the queue


def _populate_pg(url: str) -> None:
    """A 1,000,000-job queue in mid-run, as SQLite's bench populates its own."""
    store = open_store(url)
    sql = store.sql
    now = time.time()
    day = 86_400.0
    with sql.transaction():
        sql.execute(
            "UPDATE jobs SET stage = 'done', outcome_path = 'x.json', "
            "done_at = ? - (1000000 - seq) * ? / 1000000.0 WHERE seq % 10 < 6",
            (now, day),
        )
        sql.execute(
            "UPDATE jobs SET stage = 'failed', attempts = 5, error_kind = 'not_found', "
            "error_message = 'HTTP 404', done_at = ? WHERE seq % 100 = 99",
            (now - 3600,),
        )
        sql.execute(
            "UPDATE jobs SET attempts = 1, error_kind = 'http_transient', "
            "error_message = 'HTTP 503', next_attempt_at = ? "
            "WHERE seq % 1000 = 7 AND stage = 'queued'",
            (now + 600,),
        )
        sql.execute(
            "INSERT INTO attempts (job_id, run_id, stage, started_at, gate_wait, duration, "
            "outcome) SELECT id, 'bench', 'extract', done_at - 5, 0.01, 1.0, 'ok' FROM jobs "
            "WHERE stage = 'done' AND done_at > ?",
            (now - 900,),
        )
    sql.execute("ANALYZE")
    store.close()


def queue_section(
    pg: PostgresServer, scratch: Path, repeat: int, ids_n: int, claim_n: int
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "claim": {"sqlite": [], "postgres": []},
        "lifecycle": {"sqlite": [], "postgres": []},
    }
    for rep in range(repeat):
        for backend in ("sqlite", "postgres") if rep % 2 == 0 else ("postgres", "sqlite"):
            db = (
                str(scratch / f"claim-{rep}.db")
                if backend == "sqlite"
                else pg.create_database(f"claim_{rep}")
            )
            out["claim"][backend].append(_claim_direct(db, claim_n))
            db = (
                str(scratch / f"life-{rep}.db")
                if backend == "sqlite"
                else pg.create_database(f"life_{rep}")
            )
            out["lifecycle"][backend].append(asyncio.run(_lifecycle(db, claim_n)))
            print(f"bench.fleet: queue {backend} repeat {rep + 1}: "
                  f"{out['claim'][backend][-1]['per_second']:.0f} claim+complete/s, "
                  f"{out['lifecycle'][backend][-1]['per_second']:.0f} lifecycles/s",
                  flush=True)  # fmt: skip
    ids = scratch / "ids.txt"
    write_ids(ids, ids_n)
    out["enqueue"] = []
    url = ""
    for rep in range(repeat):
        url = pg.create_database(f"enqueue_{rep}")
        store = open_store(url)
        start = time.perf_counter()
        report = enqueue_file(store, ids)
        out["enqueue"].append({"seconds": time.perf_counter() - start, "new": report.new})
        store.close()
        print(
            f"bench.fleet: enqueue {ids_n:,} into PostgreSQL: "
            f"{out['enqueue'][-1]['seconds']:.1f} s",
            flush=True,
        )
    _populate_pg(url)
    out["status_inproc"], out["status_cli"] = [], []
    store = open_store(url, readonly=True)
    reads.status(store, time.time())  # warm, as a second `rpa status` finds it
    for _ in range(repeat):
        start = time.perf_counter()
        data = reads.status(store, time.time())
        out["status_inproc"].append(time.perf_counter() - start)
        start = time.perf_counter()
        subprocess.run([PY, "-m", "rpa", "status", "--db", url], capture_output=True, check=True,
                       env=clean_env())  # fmt: skip
        out["status_cli"].append(time.perf_counter() - start)
    store.close()
    out["status_total"] = data["totals"]["total"]
    return out


# ---------------------------------------------------------------------------- 2. end to end


def _ceiling(files: Path, workers: int) -> dict[str, Any]:
    report = files.with_suffix(".ceiling.json")
    m = run_measured([PY, "-m", "bench.ceiling", str(report), str(files), "--workers",
                      str(workers), "--extractor", "pdfium"], report=report)  # fmt: skip
    return {"wall": m.wall, "pages": m.report["pages"], "pages_per_s": m.report["pages"] / m.wall}


def _fleet(
    url: str, ids: Path, template: str, out: Path, processes: int, pages: int
) -> dict[str, Any]:
    store = open_store(url)
    enqueue_file(store, ids)  # the queue is full before the clock starts
    store.close()
    workers = max(1, 2 // processes)
    args = ["run", str(ids), "--db", url, "--out", str(out), "--pdf-url", template,
            "--extractor", "pdfium", "--workers", str(200 // processes), "--no-progress",
            "--extract-workers", str(workers), "--min-free-mb", "0"]  # fmt: skip
    results: list[Any] = [None] * processes
    busy0 = _busy()
    start = time.perf_counter()

    def one(i: int) -> None:
        results[i] = run_measured([PY, "-m", "rpa", *args], env=clean_env())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(processes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    busy = _busy() - busy0
    store = open_store(url, readonly=True)
    done = reads.totals(store, time.time()).done
    store.close()
    trees = sum(m.tree_cpu for m in results)
    mains = sum(m.main_cpu for m in results)
    return {
        "processes": processes,
        "wall": wall,
        "done": done,
        "pages_per_s": pages / wall,
        "exit_codes": [m.returncode for m in results],
        "main_cpu_ms_per_paper": 1000 * mains / max(done, 1),
        "tree_cpu_ms_per_paper": 1000 * trees / max(done, 1),
        "other_cpu_ms_per_paper": 1000 * (busy - trees) / max(done, 1),  # postgres + nginx
        "machine_busy_cores": busy / wall,
    }


def e2e_section(
    pg: PostgresServer, scratch: Path, repeat: int, copies: int, kind: str
) -> dict[str, Any]:
    papers = load_papers()
    items = make_items(papers, copies, scratch / "pdf")
    pages = sum(i.pages for i in items)
    ids = scratch / "ids.txt"
    ids.write_text("".join(f"ext:{i.name}\n" for i in items))
    files = scratch / "files.txt"
    files.write_text("".join(f"{i.path}\n" for i in items))
    out: dict[str, Any] = {"jobs": len(items), "pages": pages, "ceiling": [], "fleet": {}}
    with Server(scratch / "pdf", kind) as server:
        out["server"] = server.kind
        for rep in range(repeat):
            order = [1, 2, 4] if rep % 2 == 0 else [4, 2, 1]
            out["ceiling"].append(_ceiling(files, 2))
            print(
                f"bench.fleet: ceiling {out['ceiling'][-1]['pages_per_s']:.0f} pages/s", flush=True
            )
            for p in order:
                url = pg.create_database(f"fleet_{rep}_{p}")
                got = _fleet(url, ids, server.url_template, scratch / f"out-{rep}-{p}", p, pages)
                got["ratio"] = got["pages_per_s"] / out["ceiling"][-1]["pages_per_s"]
                out["fleet"].setdefault(str(p), []).append(got)
                print(f"bench.fleet: {p} processes: {got['pages_per_s']:.0f} pages/s, "
                      f"ratio {got['ratio']:.2f}, main {got['main_cpu_ms_per_paper']:.1f} ms/paper",
                      flush=True)  # fmt: skip
    return out


# ---------------------------------------------------------------------------- report


def _markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"# PostgreSQL and the fleet ({m['date']})", "",
             f"Machine: {m['cpu']}, {m['memory']}, {m['os']}, Python {m['python']}; "
             f"{m['versions']}.",
             f"PostgreSQL: {report.get('postgres', '?')}; git {m['git']}.", ""]  # fmt: skip
    q = report.get("queue")
    if q:
        lines += ["## 1. Queue", "", "| figure | SQLite | PostgreSQL |", "| --- | --- | --- |"]
        for key, label in (("claim", "claim+complete / s (one connection)"),
                           ("lifecycle",
                            "full lifecycle / s (AsyncQueue, 200 coroutines)")):  # fmt: skip
            s = _median([r["per_second"] for r in q[key]["sqlite"]])
            p = _median([r["per_second"] for r in q[key]["postgres"]])
            lines.append(f"| {label} | {s:.0f} | {p:.0f} |")
        e = [r["seconds"] for r in q["enqueue"]]
        lines.append(
            f"| enqueue {report['ids']:,} IDs | — | "
            f"{_median(e):.1f} s ({min(e):.1f}–{max(e):.1f}) |"
        )
        lines.append(
            f"| status on {q['status_total']:,} jobs, in process | — | "
            f"{_median(q['status_inproc']):.3f} s |"
        )
        lines.append(f"| `rpa status`, a new process | — | {_median(q['status_cli']):.2f} s |")
        lines.append("")
    e2e = report.get("e2e")
    if e2e:
        ceil = _median([c["pages_per_s"] for c in e2e["ceiling"]])
        lines += ["## 2. End to end, pdfium, one PostgreSQL queue", "",
                  f"{e2e['jobs']} jobs, {e2e['pages']} pages; server {e2e['server']}; "
                  f"pdfium pool ceiling (2 processes, local files) {ceil:.0f} pages/s.", "",
                  "| rpa processes | pages/s | ÷ ceiling (same repeat) | main CPU ms/paper | "
                  "tree CPU ms/paper | database+mirror CPU ms/paper | machine busy (cores) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for p, runs in sorted(e2e["fleet"].items(), key=lambda kv: int(kv[0])):
            lines.append(
                f"| {p} | {_median([r['pages_per_s'] for r in runs]):.0f} | "
                f"{_median([r['ratio'] for r in runs]):.2f} "
                f"({min(r['ratio'] for r in runs):.2f}–{max(r['ratio'] for r in runs):.2f}) | "
                f"{_median([r['main_cpu_ms_per_paper'] for r in runs]):.1f} | "
                f"{_median([r['tree_cpu_ms_per_paper'] for r in runs]):.1f} | "
                f"{_median([r['other_cpu_ms_per_paper'] for r in runs]):.1f} | "
                f"{_median([r['machine_busy_cores'] for r in runs]):.2f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sections", default="queue,e2e")
    parser.add_argument("--queue-ids", type=int, default=1_000_000)
    parser.add_argument("--claim-jobs", type=int, default=20_000)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--server", default="auto", choices=("auto", "nginx", "python"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.queue_ids, args.claim_jobs, args.copies = 1, 100_000, 5_000, 8
    sections = set(args.sections.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="rpa-bench-fleet-"))
    scratch.chmod(0o755)
    report: dict[str, Any] = {"machine": machine_info(), "ids": args.queue_ids}
    with PostgresServer() as pg:
        report["postgres"] = str(pg.bin_dir)
        if "queue" in sections:
            report["queue"] = queue_section(
                pg, scratch, args.repeat, args.queue_ids, args.claim_jobs
            )
        if "e2e" in sections:
            report["e2e"] = e2e_section(pg, scratch, args.repeat, args.copies, args.server)
    stamp = time.strftime("%Y-%m-%d")
    output = (
        args.output
        or REPO / "bench" / "results" / f"{stamp}-fleet{'-quick' if args.quick else ''}.md"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    text = _markdown(report)
    output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
