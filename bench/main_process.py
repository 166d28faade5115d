"""The main process's cost: rpa beside the bare extraction pool, whole processes, one run.

    .venv/bin/python -m bench.main_process                        # 3 repeats, this checkout
    .venv/bin/python -m bench.main_process --tree /tmp/before     # another checkout's rpa
    .venv/bin/python -m bench.main_process --quick                # 1 repeat, fewer copies

For each extractor (pdfium: 40 copies of the 32 real papers = 1,280 jobs; pypdf: 4 copies =
128 jobs) and each repeat, two whole processes run back to back under `bench.measure`:

* the ceiling: `bench.ceiling`, a bare process pool (one process a core, niceness +10 like
  rpa's) over the same files on local disk;
* rpa: the real CLI, `python -m rpa run ids.txt --workers 200 --extractor X --rate-limits ''
  --no-progress --pdf-url http://127.0.0.1:PORT/pdf/{id}` against nginx on 127.0.0.1, with
  the lag probe of `bench/lagprobe` injected by `sitecustomize` (rpa knows nothing of it): a
  10 ms asyncio sleep-drift task from the loop's first iteration to its last.

Both walls are whole processes (interpreter start-up, imports and shutdown included); the
ratio is ceiling wall / rpa wall of the same repeat. Then one more rpa run per extractor is
sampled by py-spy (100 Hz, `--threads --nonblocking`, the main process only) and its busy
samples are split by thread and by step (the innermost frame that names one: HTTP, the queue,
the extraction pool's pipes, records and files, display, orchestration), as milliseconds of
CPU per paper.

`--pdf-tar` has rpa read the same PDFs from one arXiv-style tar (`rpa run --pdf-tar TAR
--metadata off`: members `2101/2101.00001.pdf` ..., built from the copies) instead of HTTP;
the ceiling still reads the files.

`--tree PATH` runs the rpa package of another checkout (PYTHONPATH=PATH first), for a
before/after in one sitting; `--rpa-args '--http-stack httpx'` adds flags to rpa's command.
No request leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.arms import wait_quiet
from bench.common import (
    PY,
    REPO,
    build_tars,
    clean_env,
    compile_tree,
    load_papers,
    machine_info,
    make_items,
    run_measured,
)
from bench.profile import _py_spy
from bench.server import Server

__all__ = ["lag_figures", "main", "step_of", "summary", "tree_git"]

LAGPROBE = REPO / "bench" / "lagprobe"

#: (step, markers in a frame's file path), tried from the innermost frame outwards
_STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP (httpx/httpcore/h11/ssl)", ("httpx/", "httpcore/", "h11/", "anyio/", "ssl.py")),
    ("queue database", ("rpa/queue/", "sqlite3", "psycopg/")),
    (
        "extraction pool pipes",
        (
            "rpa/extract/pool",
            "rpa/extract/process",
            "rpa/extract/protocol",
            "multiprocessing/",
            "pickle",
        ),
    ),
    ("records and files", ("rpa/layout", "rpa/files", "rpa/extract/record", "rpa/extract/outcome")),
    ("display", ("rpa/show/", "rich/")),
    ("sources (download loop)", ("rpa/sources/",)),
    ("orchestration (rpa/run)", ("rpa/run/", "rpa/gates", "rpa/metrics")),
    ("start-up (imports, CLI)", ("<frozen importlib", "rpa/cli", "typer/", "click/")),
    ("asyncio machinery", ("asyncio/", "selectors.py")),
    ("threads' work queue", ("concurrent/futures", "threading.py", "queue.py")),
)
_IDLE = (
    ".select (selectors.py",
    ".poll (selectors.py",
    "_wait_for_tstate_lock",
    ".wait (threading.py",
    "_worker (concurrent/futures/thread.py",  # innermost: waiting in work_queue.get()
)


def step_of(frames: list[str]) -> str:
    """The step a stack (outermost first) belongs to: the innermost frame that names one."""
    for frame in reversed(frames):
        for step, markers in _STEPS:
            if any(m in frame for m in markers):
                return step
    return "other"


def _thread_kind(name: str) -> str:
    for prefix in ("rpa-db", "rpa-io", "rpa-extract", "asyncio", "ThreadPoolExecutor"):
        if prefix in name:
            return prefix
    return "event loop" if "MainThread" in name else name.split("(")[0].strip()[:24]


def split_samples(raw: Path) -> tuple[Counter[str], Counter[str], Counter[tuple[str, str]]]:
    """py-spy's raw (collapsed) output -> busy samples by thread, by step, by (thread, step)."""
    threads: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        head = [f for f in frames if f.startswith(("process ", "thread "))]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if frames and any(idle in frames[-1] for idle in _IDLE):
            continue  # waiting, not working (py-spy may still sample it)
        kind = _thread_kind(head[-1] if head else "")
        step = step_of(frames)
        threads[kind] += int(count)
        steps[step] += int(count)
        both[(kind, step)] += int(count)
    return threads, steps, both


def lag_figures(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    values = sorted(lag for _t, lag in data["samples"])
    first = [lag for t, lag in data["samples"] if t <= 2.0]
    if not values:
        return {"lag_max": float("nan"), "lag_p99": float("nan"), "lag_samples": 0}
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    return {
        "lag_max": 1000 * values[-1],
        "lag_p99": 1000 * p99,
        "lag_p50": 1000 * values[len(values) // 2],
        "lag_max_first_2s": 1000 * max(first, default=0.0),
        "lag_samples": len(values),
        "lag_over_50ms": sum(v > 0.05 for v in values),
    }


class Bench:
    def __init__(self, args: argparse.Namespace, scratch: Path, server: Server) -> None:
        self.args = args
        self.scratch = scratch
        self.server = server
        self.tree = REPO
        if args.tree is not None:  # only its rpa package: bench/ stays this checkout's
            self.tree = scratch / "tree"
            self.tree.mkdir()
            (self.tree / "rpa").symlink_to(args.tree.resolve() / "rpa")
        compile_tree(self.tree)

    def _env(self, lag_out: Path | None = None) -> dict[str, str]:
        env = clean_env()
        paths = [str(self.tree), str(REPO)]
        if lag_out is not None:
            paths.insert(0, str(LAGPROBE))
            env["BENCH_LAG_OUT"] = str(lag_out)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def ceiling(self, extractor: str, files: Path) -> dict[str, float]:
        wait_quiet(self.args.quiet_wait)
        report = Path(tempfile.mkdtemp(dir=self.scratch)) / "ceiling.json"
        cmd = [PY, "-m", "bench.ceiling", str(report), str(files), "--extractor", extractor]
        m = run_measured(cmd, report=report, env=self._env())
        if m.returncode != 0:
            raise RuntimeError(f"ceiling failed: {m.stderr[-2000:]}")
        return {"wall": m.wall, "tree_cpu": m.tree_cpu, "foreign": m.foreign_cpu / m.wall}

    def rpa_cmd(self, extractor: str, source: list[str], folder: Path) -> list[str]:
        cmd = [PY, "-m", "rpa", "run", *source, "--db", str(folder / "q.db")]
        cmd += ["--out", str(folder / "out")]
        cmd += ["--workers", "200", "--extractor", extractor, "--rate-limits", ""]
        return [*cmd, "--no-progress", *self.args.rpa_args.split()]

    def source(self, ids: Path, tar: Path | None) -> list[str]:
        """What `rpa run` reads: the IDs from the loopback mirror, or every paper of the tar
        (arXiv IDs: `--metadata off`, so no request goes to arXiv's API)."""
        if tar is not None:
            return ["--pdf-tar", str(tar), "--metadata", "off"]
        return [str(ids), "--pdf-url", self.server.url_template]

    def rpa(self, extractor: str, source: list[str], n: int) -> dict[str, float]:
        wait_quiet(self.args.quiet_wait)
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        lag_out = folder / "lag.json"
        server0 = self.server.cpu_seconds()
        cmd = self.rpa_cmd(extractor, source, folder)
        m = run_measured(cmd, cwd=folder, env=self._env(lag_out))
        server_cpu = self.server.cpu_seconds() - server0
        if m.returncode != 0:
            raise RuntimeError(f"rpa failed ({m.returncode}): {m.stderr[-3000:]}")
        done = len(list((folder / "out").rglob("*.json")))
        if done < n:
            raise RuntimeError(f"rpa wrote {done} outcome records of {n}")
        got = {
            "wall": m.wall,
            "tree_cpu": m.tree_cpu,
            "main_cpu": m.main_cpu,
            "main_ms_per_paper": 1000 * m.main_cpu / n,
            "extract_cpu": m.tree_cpu - m.main_cpu,
            "server_cpu": server_cpu,
            "foreign": max(0.0, m.foreign_cpu - server_cpu) / m.wall,
            "main_rss_mb": m.main_maxrss_mb,
            **lag_figures(lag_out),
        }
        shutil.rmtree(folder, ignore_errors=True)
        return got

    def profile(self, extractor: str, source: list[str], n: int) -> dict[str, Any]:
        spy = _py_spy()
        if spy is None:
            return {"note": "py-spy not installed"}
        wait_quiet(self.args.quiet_wait)
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        raw = folder / "stacks.txt"
        cmd = [spy, "record", "--threads", "--nonblocking", "--rate", "100", "--format", "raw"]
        cmd += ["--output", str(raw), "--", *self.rpa_cmd(extractor, source, folder)]
        done = subprocess.run(
            cmd, cwd=folder, env=self._env(), capture_output=True, text=True, check=False
        )
        if not raw.exists():
            return {"note": f"py-spy recorded nothing: {done.stderr[-500:]}"}
        threads, steps, both = split_samples(raw)
        keep = self.args.keep_stacks
        if keep is not None:
            shutil.copy(raw, keep.with_name(f"{keep.name}-{extractor}.txt"))
        ms = 1000 / 100 / n  # one sample = 10 ms of a thread's CPU; per paper
        return {
            "threads_ms": {k: round(v * ms, 2) for k, v in threads.most_common()},
            "steps_ms": {k: round(v * ms, 2) for k, v in steps.most_common()},
            "thread_step_ms": {
                f"{k} / {s}": round(v * ms, 2) for (k, s), v in both.most_common(24)
            },
            "total_ms": round(sum(threads.values()) * ms, 2),
        }


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    return {
        k: {
            "median": _median([r[k] for r in runs]),
            "min": min(r[k] for r in runs),
            "max": max(r[k] for r in runs),
        }
        for k in keys
    }


def tree_git(tree: Path) -> str:
    """The checkout's last commit, `<hash> <subject>`."""
    return subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.main_process")
    parser.add_argument("--tree", type=Path, help="a checkout whose rpa/ to run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--pdfium-copies", type=int, default=40)
    parser.add_argument("--pypdf-copies", type=int, default=4)
    parser.add_argument("--extractors", default="pdfium,pypdf")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--pdf-tar",
        action="store_true",
        help="rpa reads the same PDFs from one arXiv-style tar (--pdf-tar) instead of HTTP",
    )
    parser.add_argument(
        "--rpa-args", default="", help="more flags for rpa, e.g. '--http-stack httpx'"
    )
    parser.add_argument("--quiet-wait", type=float, default=15.0)
    parser.add_argument("--keep-stacks", type=Path, help="save py-spy's stacks as PATH-X.txt")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.pdfium_copies, args.pypdf_copies = 1, 10, 1
    papers = load_papers()
    scratch = Path(tempfile.mkdtemp(prefix="rpa-bench-mp-"))
    scratch.chmod(0o755)
    copies = {"pdfium": args.pdfium_copies, "pypdf": args.pypdf_copies}
    extractors = [e for e in args.extractors.split(",") if e]
    items = make_items(papers, max(copies[e] for e in extractors), scratch / "mirror")
    results: dict[str, Any] = {"machine": machine_info(), "tree": str(args.tree or REPO)}
    results["source"] = "one arXiv-style tar (--pdf-tar)" if args.pdf_tar else "HTTP"
    results["tree_git"] = tree_git(args.tree or REPO)
    try:
        with Server(scratch / "mirror", "auto") as server:
            results["mirror"] = server.kind
            bench = Bench(args, scratch, server)
            for extractor in extractors:
                chosen = items[: len(papers) * copies[extractor]]
                n = len(chosen)
                pages = sum(i.pages for i in chosen)
                ids_file = scratch / f"ids-{extractor}.txt"
                ids_file.write_text("".join(f"{i.rpa_id}\n" for i in chosen))
                tar = None
                if args.pdf_tar:
                    print(f"building the tar of {n} papers", file=sys.stderr, flush=True)
                    paths = [i.path.resolve() for i in chosen]
                    tar = build_tars(paths, scratch / f"tar-{extractor}", 0)
                source = bench.source(ids_file, tar)
                files = scratch / f"files-{extractor}.txt"
                files.write_text("".join(f"{i.path}\n" for i in chosen))
                runs = []
                for k in range(args.repeat):
                    pair = ["ceiling", "rpa"] if k % 2 == 0 else ["rpa", "ceiling"]
                    got: dict[str, dict[str, float]] = {}
                    for arm in pair:
                        print(
                            f"[{time.strftime('%H:%M:%S')}] {extractor} repeat {k + 1}: {arm}",
                            file=sys.stderr,
                            flush=True,
                        )
                        got[arm] = (
                            bench.ceiling(extractor, files)
                            if arm == "ceiling"
                            else bench.rpa(extractor, source, n)
                        )
                    run = {f"rpa_{k2}": v for k2, v in got["rpa"].items()}
                    run.update({f"ceiling_{k2}": v for k2, v in got["ceiling"].items()})
                    run["ratio"] = got["ceiling"]["wall"] / got["rpa"]["wall"]
                    run["rpa_papers_s"] = n / got["rpa"]["wall"]
                    run["ceiling_pages_s"] = pages / got["ceiling"]["wall"]
                    runs.append(run)
                    print(
                        f"    ratio {run['ratio']:.3f}  rpa {got['rpa']['wall']:.1f}s "
                        f"ceiling {got['ceiling']['wall']:.1f}s  main "
                        f"{got['rpa']['main_ms_per_paper']:.1f} ms/paper  lag max "
                        f"{got['rpa']['lag_max']:.1f} p99 {got['rpa']['lag_p99']:.2f}",
                        file=sys.stderr,
                        flush=True,
                    )
                entry: dict[str, Any] = {
                    "jobs": n,
                    "pages": pages,
                    "runs": runs,
                    "summary": summary(runs),
                }
                if not args.no_profile:
                    print(
                        f"[{time.strftime('%H:%M:%S')}] {extractor}: py-spy run",
                        file=sys.stderr,
                        flush=True,
                    )
                    entry["profile"] = bench.profile(extractor, source, n)
                results[extractor] = entry
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = json.dumps(results, indent=1)
    if args.output:
        args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
