"""User stages (issue 22): 1,000 done papers, an async stage that posts each record to an API
on 127.0.0.1 that takes 200 ms an answer, at a limit of 100 calls a second.

    .venv/bin/python -m bench.stages [--papers 1000] [--delay 0.2] [--rate 100] [--repeat 1]
        [--tree ../main]  # also another checkout's rpa, arm by arm beside this one's

Two arms, each a real `rpa resume` (a subprocess) over the same queue of done papers (the
bundled papers' real records, copied: their outcome files are rewritten with the result):

- `rpa async stage`: examples.post_record:post_record (aiohttp, awaited on the loop), kind async,
  concurrency 32, `--stage-rate post=100/1s`;
- `to_thread (seeds)`: the same call made with urllib in `asyncio.to_thread`, on the loop's
  default executor, the design the seeds describe, with the same rate and concurrency.

At the limit, rpa's stage runs at ~N/(T + answer time) = 100/1.2 s = 83 calls a second: its
rate gate is the fleet's (rpa.hosts.fleet, arXiv's rule), whose slot frees T seconds after
the answer begins. The seeds' design is capped by the default executor (min(32, CPUs + 4)
threads: 6 on 2 CPUs, 6 / 0.2 s = 30 a second), whatever the stage's concurrency.

Figures: wall time of the stage phase, papers a second, the run's loop lag p99 and max (the
whole run, rpa's own probe), the API's most calls in flight. Writes
bench/results/<date>-stages.md and prints it. Not a test: no figure fails anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

SEEDS_STAGE = """
import asyncio, json, os, urllib.request

async def nothing(paper) -> dict:  # the stage machinery alone: no call at all
    return {"id": paper.id}

def _post(body: bytes) -> dict:
    request = urllib.request.Request(os.environ["RECORD_API"], data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())

async def post_via_thread(paper) -> dict:
    body = json.dumps({"id": paper.id, "title": paper.title, "abstract": paper.abstract})
    return await asyncio.to_thread(_post, body.encode())
"""

API = """
import sys, time
from rpa.testing.stage_api import StageApi
with StageApi(delay=float(sys.argv[1])) as api:
    print(api.url, flush=True)
    sys.stdin.read()
    print(api.most_in_flight, sum(api.received.values()), flush=True)
"""


def _env(tree: Path = ROOT, **extra: str) -> dict[str, str]:
    """The environment of a run of the rpa of the checkout `tree` (first on PYTHONPATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPA_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def _rpa(work: Path, *args: str, tree: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rpa", *args], cwd=work, env=_env(tree, **env),
        capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _label(tree: Path) -> str:
    """The checkout's commit (short), and `+` when its work tree has changes."""
    git = ["git", "-C", str(tree)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True)  # fmt: skip
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def _records(work: Path) -> list[dict[str, Any]]:
    """The bundled papers' real records: one `rpa demo` run."""
    demo = _rpa(work, "demo", "--db", "demo.db", "--out", "demo-out", "--no-progress")
    if demo.returncode != 0:
        raise SystemExit(f"the demo failed: {demo.stderr}")
    folder = work / "demo-out" / "outcome"
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


def _queue(work: Path, records: list[dict[str, Any]], n: int) -> Path:
    """A queue of `n` done papers, copies of `records` (with outcome files)."""
    from rpa.queue import open_store

    db = work / "queue.db"
    store = open_store(str(db), create=True)
    ids = [f"ext:bench-{i:05}" for i in range(n)]
    store.enqueue(ids, time.time())
    out = work / "out" / "outcome"
    out.mkdir(parents=True)
    with store.sql.transaction():
        for i, job_id in enumerate(ids):
            record = {**records[i % len(records)], "id": job_id}
            path = out / f"{job_id.replace(':', '_')}.json"
            path.write_text(json.dumps(record))
            store.sql.execute(
                "UPDATE jobs SET stage = 'done', done_at = ?, outcome_path = ? WHERE id = ?",
                (time.time(), str(path), job_id),
            )
            store.sql.execute(
                "INSERT INTO results (id, outcome_json) VALUES (?, ?)",
                (job_id, json.dumps(record)),
            )
    store.close()
    return db


def _arm(
    work: Path, db: Path, call: str, delay: float, rate: int, tree: Path = ROOT
) -> dict[str, Any]:
    run = work / f"arm-{call.split(':')[1]}"
    shutil.copytree(work / "base", run)
    api = subprocess.Popen(
        [sys.executable, "-c", API, str(delay)], env=_env(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert api.stdout is not None and api.stdin is not None
    url = api.stdout.readline().strip()
    started = time.monotonic()
    result = _rpa(
        run, "resume", "--db", str(run / db.name), "--out", str(run / "out"), "--no-progress",
        "--log-format", "json", "--stage", f"post={call}", "--stage-concurrency", "post=32",
        *(["--stage-rate", f"post={rate}/1s"] if rate else []), tree=tree, RECORD_API=url,
    )  # fmt: skip
    wall = time.monotonic() - started
    api.stdin.close()
    most, received = (int(x) for x in api.stdout.readline().split())
    api.wait(timeout=30)
    summary = next(
        (json.loads(line) for line in result.stdout.splitlines() if '"event": "summary"' in line),
        None,
    )
    if summary is None:
        raise SystemExit(f"{call}: no summary\n{result.stdout}\n{result.stderr}")
    stage = summary["stages"]["post"]
    return {
        "arm": call,
        "rpa": _label(tree),
        "status": summary["status"],
        "done": stage["done"],
        "wall_s": round(wall, 2),
        "run_s": summary["wall_seconds"],
        "papers_per_s": round(stage["done"] / summary["wall_seconds"], 1),
        "stage_p50_ms": stage["p50_ms"],
        "lag_p99_ms": summary["lag_p99_ms"],
        "lag_max_ms": summary["lag_max_ms"],
        "api_most_in_flight": most,
        "api_calls": received,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--rate", type=int, default=100, help="calls a second (0: no limit)")
    parser.add_argument(
        "--arms", default="examples.post_record:post_record,seeds_stage:post_via_thread",
        help="the stages to compare, module:function, comma-separated",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--tree", type=Path, action="append", default=[],
        help="also measure the rpa of this checkout, each arm beside this one's (repeatable)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rpa-bench-stages-") as tmp:
        work = Path(tmp)
        base = work / "base"
        base.mkdir()
        shutil.copytree(ROOT / "examples", base / "examples")
        (base / "seeds_stage.py").write_text(SEEDS_STAGE)
        db = _queue(base, _records(work), args.papers)
        for n in range(args.repeat):
            for call in args.arms.split(","):
                for tree in [ROOT, *(t.resolve() for t in args.tree)]:
                    row = _arm(work, db, call, args.delay, args.rate, tree)
                    row["repeat"] = n + 1
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    shutil.rmtree(work / f"arm-{call.split(':')[1]}")
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    head = (
        f"# User stages: {args.papers} papers, API {args.delay * 1000:.0f} ms an answer, "
        f"limit {args.rate}/s\n\n{time.strftime('%Y-%m-%d %H:%M')} UTC, {cpus} CPUs (load "
        f"average at the end {load}: a shared machine), python {sys.version.split()[0]}; "
        f"`python -m bench.stages {' '.join(sys.argv[1:])}`\n\n"
        "| arm | rpa | done | run s | papers/s | stage p50 ms | loop lag p99 ms | lag max ms | "
        "API most in flight |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    body = "".join(
        f"| {r['arm']} | {r['rpa']} | {r['done']} | {r['run_s']} | {r['papers_per_s']} "
        f"| {r['stage_p50_ms']} "
        f"| {r['lag_p99_ms']} | {r['lag_max_ms']} | {r['api_most_in_flight']} |\n"
        for r in rows
    )
    report = head + body + "\n" + textwrap.dedent(__doc__ or "").split("Figures:")[0]
    output = args.output or ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-stages.md"
    output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
