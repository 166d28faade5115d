"""The conductor: how many papers a second ONE rpa main process sustains when extraction is free.

    .venv/bin/python -m bench.conductor                          # 2,000 papers, 3 repeats
    .venv/bin/python -m bench.conductor --tree /tmp/before       # another checkout's rpa
    .venv/bin/python -m bench.conductor --quick                  # 1 repeat, 300 papers

Every paper's extraction is the benchmark-only null extraction (`rpa.extract.null`, selected by
`BENCH_RPA_EXTRACTOR=null` in rpa's environment, read by the extraction processes only): it
writes a one-line text and returns a valid one-page result without opening the PDF. Everything
else is a real run, so the figures are the main process's own cost per paper: fetching and
checking the PDF (size, `%PDF-`, SHA-256), the queue, the records, the pool's pipes, asyncio.

Sources, the same N real papers (`../shared/corpus/real`, repeated under many names):

* tar:   `rpa run --pdf-tar 'DIR/arXiv_pdf_*.tar'`: arXiv-style bulk tars (members
         `2101/2101.00001.pdf` ..., `--tar-papers` a tar, default 1,000), every paper in them;
* local: `rpa run ids.txt --pdf-url 'file:///DIR/{id}.pdf'`: a folder of hard links to the
         corpus files (a symlink out of the folder is refused by rpa);
* http:  `rpa run ids.txt --pdf-url http://127.0.0.1:PORT/pdf/{id}` from a loopback nginx
         (`bench.server`: installed with apt-get when missing, else rpa's own mirror).

Each run is a whole process (start-up, enqueue or tar indexing, shutdown included) under
`bench.measure` on a fresh SQLite queue and output folder, with `--workers 200 --rate-limits ''
--metadata off --no-progress`, and the outside lag probe (`bench/lagprobe`). Figures: papers/s
over the whole process; the steady rate (records written between the 10th and the 90th
percentile of their times, from the records' mtimes); main-process CPU per paper and how busy
it kept one core; the extraction processes' CPU per paper (tree minus main); the time to the
first record; the loop's lag. The sources' order rotates every repeat; medians of `--repeat`.

`--tree PATH` runs another checkout's `rpa/` (bench/ stays this one's); that checkout must have
the null extraction hook (`rpa/extract/null.py`): the run checks the texts and stops if not.
No request leaves 127.0.0.1 (`--metadata off`: no arXiv API for the tar's arXiv IDs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
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
from bench.conductor_report import derive, markdown
from bench.main_process import lag_figures, split_samples, summary, tree_git
from bench.profile import _py_spy
from bench.server import Server

__all__ = ["NULL_ENV", "build_local", "main"]

LAGPROBE = REPO / "bench" / "lagprobe"
#: the switch rpa.extract.worker.load_extractor reads (rpa.extract.null.ENV)
NULL_ENV = "BENCH_RPA_EXTRACTOR"
#: the line the null extraction writes (rpa.extract.null.NULL_LINE)
NULL_MARK = "null extraction (benchmark"
SOURCES = ("tar", "local", "http")


@dataclass(frozen=True, slots=True)
class Source:
    """One way rpa gets the same N papers: the arguments of `rpa run` before --db."""

    name: str
    args: tuple[str, ...]


def build_local(links: list[Path], folder: Path) -> None:
    """`folder`/<name>.pdf for each of `links` (symlinks to the corpus), as hard links to the
    corpus file (a copy if the file system refuses): rpa's local source refuses a symlink
    that leads out of the template's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for link in links:
        target = link.resolve()
        dest = folder / link.name
        try:
            os.link(target, dest)
        except OSError:
            shutil.copyfile(target, dest)


class CpuSampler:
    """The main process's CPU over time, read from /proc/PID/stat every 20 ms by a thread of
    this process (the pid from `bench.measure --pid-file`): the CPU it spent between two
    moments of the run, such as the 10th and the 90th percentile of its records."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.samples: list[tuple[float, float]] = []  # (time.time(), CPU seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="cpu-sampler", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self.pid_file.exists():
            if self._stop.wait(0.005):
                return
        stat = Path(f"/proc/{self.pid_file.read_text().strip()}/stat")
        while not self._stop.wait(0.02):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                return  # exited
            self.samples.append((time.time(), (int(fields[11]) + int(fields[12])) / self._tick))

    def _cpu_at(self, when: float) -> float:
        """CPU seconds at `when`, interpolated between the samples around it."""
        before = [s for s in self.samples if s[0] <= when]
        after = [s for s in self.samples if s[0] >= when]
        if not before or not after:
            return float("nan")
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def cpu_between(self, start: float, end: float) -> float:
        return self._cpu_at(end) - self._cpu_at(start)


class Bench:
    def __init__(self, args: argparse.Namespace, scratch: Path, server: Server | None) -> None:
        self.args = args
        self.scratch = scratch
        self.server = server
        self.tree = REPO
        if args.tree is not None:  # only its rpa package: bench/ stays this checkout's
            self.tree = scratch / "tree"
            self.tree.mkdir()
            (self.tree / "rpa").symlink_to(args.tree.resolve() / "rpa")
        compile_tree(self.tree)

    def _env(self, lag_out: Path | None) -> dict[str, str]:
        env = clean_env()
        env[NULL_ENV] = "null"
        paths = [str(self.tree), str(REPO)]
        if lag_out is not None:
            paths.insert(0, str(LAGPROBE))
            env["BENCH_LAG_OUT"] = str(lag_out)
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def _cmd(self, source: Source, folder: Path) -> list[str]:
        cmd = [PY, "-m", "rpa", "run", *source.args, "--db", str(folder / "q.db")]
        cmd += ["--out", str(folder / "out"), "--workers", str(self.args.workers)]
        cmd += ["--rate-limits", "", "--metadata", "off", "--no-progress"]
        return [*cmd, *self.args.rpa_args.split()]

    def profile(self, source: Source, n: int) -> dict[str, Any]:
        """One more run sampled by py-spy (100 Hz, --threads --nonblocking, the main process
        only): its busy samples by thread and by step (`bench.main_process.split_samples`), in
        ms of CPU per paper."""
        spy = _py_spy()
        if spy is None:
            return {"note": "py-spy not installed (pip install py-spy)"}
        wait_quiet(self.args.quiet_wait)
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        raw = folder / "stacks.txt"
        cmd = [spy, "record", "--threads", "--nonblocking", "--rate", "100", "--format", "raw"]
        cmd += ["--output", str(raw), "--", *self._cmd(source, folder)]
        done = subprocess.run(
            cmd, cwd=folder, env=self._env(None), capture_output=True, text=True, check=False
        )
        if not raw.exists():
            return {"note": f"py-spy recorded nothing: {done.stderr[-500:]}"}
        threads, steps, both = split_samples(raw)
        if self.args.keep_stacks is not None:
            keep = self.args.keep_stacks
            shutil.copy(raw, keep.with_name(f"{keep.name}-{source.name}.txt"))
        shutil.rmtree(folder, ignore_errors=True)
        ms = 1000 / 100 / n  # one sample = 10 ms of a thread's CPU; per paper
        return {
            "threads_ms": {k: round(v * ms, 2) for k, v in threads.most_common()},
            "steps_ms": {k: round(v * ms, 2) for k, v in steps.most_common()},
            "thread_step_ms": {
                f"{k} / {s}": round(v * ms, 2) for (k, s), v in both.most_common(16)
            },
            "total_ms": round(sum(threads.values()) * ms, 2),
        }

    def run(self, source: Source, n: int) -> dict[str, float]:
        quiet = wait_quiet(self.args.quiet_wait)
        folder = Path(tempfile.mkdtemp(dir=self.scratch))
        out = folder / "out"
        lag_out = folder / "lag.json"
        cmd = self._cmd(source, folder)
        server = self.server if source.name == "http" else None
        server0 = server.cpu_seconds() if server is not None else 0.0
        started = time.time()
        with CpuSampler(folder / "pid") as sampler:
            m = run_measured(cmd, cwd=folder, env=self._env(lag_out), pid_file=sampler.pid_file)
        server_cpu = server.cpu_seconds() - server0 if server is not None else 0.0
        if m.returncode != 0:
            raise RuntimeError(f"rpa ({source.name}) failed ({m.returncode}): {m.stderr[-3000:]}")
        records = sorted(p.stat().st_mtime for p in (out / "outcome").rglob("*.json"))
        if len(records) < n:
            raise RuntimeError(f"rpa ({source.name}) wrote {len(records)} records of {n}")
        text = next((out / "text").rglob("*.txt"), None)
        if text is None or NULL_MARK not in text.read_text(errors="replace"):
            raise SystemExit(
                f"bench.conductor: {text} is not the null extraction's text: the rpa run "
                f"({self.tree}) lacks rpa/extract/null.py and its hook ({NULL_ENV})"
            )
        lo, hi = records[len(records) // 10], records[(9 * len(records)) // 10]
        steady_n = 9 * len(records) // 10 - len(records) // 10
        steady = steady_n / (hi - lo) if hi > lo else 0.0
        steady_cpu = sampler.cpu_between(lo, hi)
        got = {
            "papers_s": n / m.wall,
            "steady_papers_s": steady,
            "wall": m.wall,
            "first_record_s": records[0] - started,
            "main_cpu": m.main_cpu,
            "main_ms_per_paper": 1000 * m.main_cpu / n,
            "main_busy": m.main_cpu / m.wall,
            "steady_main_ms_per_paper": 1000 * steady_cpu / steady_n if steady_n else 0.0,
            "steady_main_busy": steady_cpu / (hi - lo) if hi > lo else 0.0,
            "extract_ms_per_paper": 1000 * (m.tree_cpu - m.main_cpu) / n,
            "tree_cpu": m.tree_cpu,
            "server_cpu": server_cpu,
            "other_load": max(0.0, m.foreign_cpu - server_cpu) / m.wall,
            "quiet_before": quiet,
            "main_rss_mb": m.main_maxrss_mb,
            **lag_figures(lag_out),
        }
        shutil.rmtree(folder, ignore_errors=True)
        return derive(got, n)


def _log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _sources(args: argparse.Namespace, scratch: Path, n: int) -> tuple[list[Source], Any]:
    """Build what each chosen source reads; returns the sources and the mirror's folder."""
    papers = load_papers()
    copies = -(-n // len(papers))
    items = make_items(papers, copies, scratch / "mirror")[:n]
    ids = scratch / "ids.txt"
    ids.write_text("".join(f"{i.rpa_id}\n" for i in items))
    chosen = [s for s in args.sources.split(",") if s]
    sources = []
    for name in chosen:
        if name == "tar":
            _log(f"building the tars ({n} papers, {args.tar_papers} a tar)")
            glob = build_tars([i.path.resolve() for i in items], scratch / "tars", args.tar_papers)
            sources.append(Source("tar", ("--pdf-tar", str(glob))))
        elif name == "local":
            build_local([i.path for i in items], scratch / "local")
            template = f"file://{scratch / 'local'}/{{id}}.pdf"
            sources.append(Source("local", (str(ids), "--pdf-url", template)))
        elif name == "http":
            sources.append(Source("http", (str(ids),)))  # --pdf-url added once nginx runs
        else:
            raise SystemExit(f"bench.conductor: unknown source {name!r}: one of {SOURCES}")
    return sources, sum(i.bytes for i in items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.conductor")
    parser.add_argument("--tree", type=Path, help="a checkout whose rpa/ to run")
    parser.add_argument("--papers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="0 with --profile: only that")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 300 papers")
    parser.add_argument("--sources", default=",".join(SOURCES))
    parser.add_argument("--tar-papers", type=int, default=1000, help="papers in one tar")
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument("--rpa-args", default="", help="more flags for `rpa run`")
    parser.add_argument("--quiet-wait", type=float, default=15.0)
    parser.add_argument(
        "--profile", action="store_true", help="one more run a source under py-spy, split"
    )
    parser.add_argument("--keep-stacks", type=Path, help="save py-spy's stacks as PATH-X.txt")
    parser.add_argument("--output", type=Path, help="write the figures as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the report as markdown here")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.papers = 1, min(args.papers, 300)
    if args.tree is not None and not (args.tree / "rpa" / "extract" / "null.py").is_file():
        raise SystemExit(f"bench.conductor: {args.tree} has no rpa/extract/null.py (its hook)")
    n = args.papers
    scratch = Path(tempfile.mkdtemp(prefix="rpa-bench-conductor-"))
    scratch.chmod(0o755)
    results: dict[str, Any] = {
        "machine": machine_info(),
        "tree": str(args.tree or REPO),
        "tree_git": tree_git(args.tree or REPO),
        "papers": n,
        "repeat": args.repeat,
        "workers": args.workers,
        "command": " ".join(["python -m bench.conductor", *(argv or sys.argv[1:])]),
    }
    try:
        sources, total_bytes = _sources(args, scratch, n)
        results["bytes"] = total_bytes
        with Server(scratch / "mirror", args.server) as server:
            results["mirror"] = server.kind
            sources = [
                Source("http", (*s.args, "--pdf-url", server.url_template))
                if s.name == "http"
                else s
                for s in sources
            ]
            bench = Bench(args, scratch, server)
            runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in sources}
            for k in range(args.repeat):
                shift = k % len(sources)
                for source in sources[shift:] + sources[:shift]:
                    _log(f"repeat {k + 1}: {source.name}")
                    got = bench.run(source, n)
                    runs[source.name].append(got)
                    _log(
                        f"    {got['papers_s']:.0f} papers/s (steady {got['steady_papers_s']:.0f})"
                        f"  main {got['main_ms_per_paper']:.2f} ms/paper, "
                        f"{100 * got['main_busy']:.0f} % of a core  extraction "
                        f"{got['extract_ms_per_paper']:.2f} ms/paper  lag max "
                        f"{got['lag_max']:.1f} p99 {got['lag_p99']:.2f}"
                    )
            results["sources"] = {
                s.name: {
                    "args": list(s.args),
                    "runs": runs[s.name],
                    "summary": summary(runs[s.name]) if runs[s.name] else {},
                }
                for s in sources
            }
            for source in sources if args.profile else []:
                _log(f"{source.name}: py-spy run")
                results["sources"][source.name]["profile"] = bench.profile(source, n)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = json.dumps(results, indent=1)
    if args.output:
        args.output.write_text(text + "\n")
    report = markdown(results)
    if args.markdown:
        args.markdown.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
