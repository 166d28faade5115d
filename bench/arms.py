"""One measured run of each kind ("arm"), each in fresh processes; returns flat figures.

Every arm is started through `bench.common.run_measured`, so the figures of all arms count
the same things the same way. Throughput is over the arm's own working phase (the clock
starts before its pool or loop starts, and ends when the last paper is done).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import PY, REPO, Item, clean_env, run_measured
from bench.server import Server

__all__ = ["Context", "busy_seconds", "wait_quiet"]


@dataclass(slots=True)
class Context:
    """What every arm needs: the papers, the mirror, a scratch folder, knobs."""

    items: list[Item]  # the end-to-end set (papers x copies)
    fast_items: list[Item]  # the same for pdfium, more copies (--pdfium-copies)
    single: list[Item]  # one copy of each paper, for single-process figures
    download_items: list[Item]
    server: Server
    scratch: Path
    workers: int
    extract_workers: int
    deps: Path | None = None  # private site folder (sniffio) for the tuned download variants
    quiet_wait: float = 15.0
    nice: int = 0  # niceness increment of every measured tree (--nice)

    @property
    def pages(self) -> int:
        return sum(i.pages for i in self.items)

    def items_for(self, extractor: str) -> list[Item]:
        """The end-to-end set of an extractor: pdfium is ~15x faster, so its arms get more
        copies, or start-up (the same for both) would be much of a run."""
        return self.fast_items if extractor == "pdfium" else self.items


def busy_seconds() -> float:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait: float, threshold: float = 0.3, window: float = 2.0) -> float:
    """Wait (up to `max_wait` s) until the machine's other work uses < `threshold` cores.

    The machine may be shared (other test runs): starting an arm in a quiet moment keeps the
    noise off it. Returns the load last seen, in cores.
    """
    deadline = time.monotonic() + max_wait
    while True:
        b0 = busy_seconds()
        time.sleep(window)
        load = (busy_seconds() - b0) / window
        if load < threshold or time.monotonic() >= deadline:
            return load


def _scratch(ctx: Context, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.scratch))


def _measured(ctx: Context, cmd: Sequence[str], report: Path, **kw: Any) -> dict[str, Any]:
    wait_quiet(ctx.quiet_wait)
    server0 = ctx.server.cpu_seconds()
    m = run_measured(cmd, report=report, env=clean_env(), nice=ctx.nice, **kw)
    server_cpu = ctx.server.cpu_seconds() - server0
    if m.returncode != 0 or not m.report:
        raise RuntimeError(
            f"arm failed ({m.returncode}): {' '.join(cmd)}\n{m.stdout[-3000:]}\n{m.stderr[-3000:]}"
        )
    foreign = max(0.0, m.foreign_cpu - server_cpu)
    return {
        "m_wall": m.wall,
        "tree_cpu": m.tree_cpu,
        "main_total_cpu": m.main_cpu,
        "main_rss": m.main_maxrss_mb,
        "server_cpu": server_cpu,
        "foreign": foreign / m.wall if m.wall else 0.0,
        "report": m.report,
        "stdout": m.stdout,
    }


def _file_list(ctx: Context, items: list[Item]) -> Path:
    path = _scratch(ctx, "files") / "files.txt"
    path.write_text("".join(f"{i.path}\n" for i in items))
    return path


def ceiling(ctx: Context, extractor: str, workers: int, work: str = "text") -> dict[str, Any]:
    items = ctx.items_for(extractor) if workers > 1 else ctx.single
    report = _scratch(ctx, "ceiling") / "report.json"
    cmd = [PY, "-m", "bench.ceiling", str(report), str(_file_list(ctx, items))]
    cmd += ["--workers", str(workers), "--extractor", extractor, "--work", work]
    got = _measured(ctx, cmd, report)
    r = got["report"]
    return {
        "pages_s": r["pages"] / r["wall"],
        "papers_s": r["papers"] / r["wall"],
        "wall": r["wall"],
        "cpu": r["cpu"],
        "foreign": got["foreign"],
    }


def _ids_file(items: list[Item], folder: Path) -> Path:
    ids = folder / "ids.txt"
    ids.write_text("".join(f"{i.rpa_id}\n" for i in items))
    return ids


def rpa(ctx: Context, extractor: str, pid_file: Path | None = None) -> dict[str, Any]:
    """`rpa run` (the CLI, in `bench.rpa_main`) over the e2e set, 200 workers."""
    folder = _scratch(ctx, f"rpa-{extractor}")
    items = ctx.items_for(extractor)
    ids = _ids_file(items, folder)
    report = folder / "report.json"
    cmd = [PY, "-m", "bench.rpa_main", str(report), "--", "run", str(ids)]
    cmd += ["--db", str(folder / "rpa.db"), "--out", str(folder / "out")]
    cmd += ["--pdf-url", ctx.server.url_template, "--workers", str(ctx.workers)]
    cmd += ["--extractor", extractor, "--rate-limits", "", "--no-progress"]
    if ctx.extract_workers:
        cmd += ["--extract-workers", str(ctx.extract_workers)]
    got = _measured(ctx, cmd, report, cwd=folder, pid_file=pid_file)
    r = got["report"]
    shutil.rmtree(folder, ignore_errors=True)
    if r.get("failed") or r.get("done") != len(items):
        raise RuntimeError(f"rpa run incomplete: {r.get('done')} done, {r.get('failures')}")
    threads = r["threads_cpu"]
    sampler = threads.pop("bench-sampler", 0.0)
    run_cpu = r["run_cpu"] - sampler  # the sampler is the benchmark's, not rpa's
    return {
        "papers_s": r["done"] / r["run_wall"],
        "pages_s": r["pages"] / r["run_wall"],
        "wall": r["run_wall"],
        **_lag(r["lag"]),
        "main_cpu": run_cpu,
        "main_pct": 100 * run_cpu / r["run_wall"],
        "main_rss": r["maxrss_mb"],
        "extract_cpu": got["tree_cpu"] - got["main_total_cpu"],
        "threads": threads,
        "db_busy": r["db_busy"],
        "server_cpu": got["server_cpu"],
        "foreign": got["foreign"],
    }


def _lag(lag: dict[str, Any]) -> dict[str, Any]:
    return {
        "lag_p50": lag["p50"] * 1000,
        "lag_p99": lag["p99"] * 1000,
        "lag_max": lag["max"] * 1000,
        "lag_over5": lag["over_5ms"],
        "lag_over50": lag["over_50ms"],
        "lag_samples": lag["count"],
        "lag_worst": lag["worst"],
        "lag_over5_by_5s": lag.get("over_5ms_by_5s", []),
    }


def _urls(ctx: Context, items: list[Item], folder: Path) -> Path:
    path = folder / "urls.txt"
    template = ctx.server.url_template
    path.write_text("".join(f"{i.name}\t{template.replace('{id}', i.name)}\n" for i in items))
    return path


def naive(ctx: Context, mode: str) -> dict[str, Any]:
    folder = _scratch(ctx, f"naive-{mode}")
    report = folder / "report.json"
    cmd = [PY, "-m", "bench.naive", str(report), str(_urls(ctx, ctx.items, folder))]
    cmd += [str(folder / "out"), "--mode", mode, "--workers", str(ctx.workers)]
    got = _measured(ctx, cmd, report)
    r = got["report"]
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "papers_s": r["done"] / r["run_wall"],
        "pages_s": r["pages"] / r["run_wall"],
        "wall": r["run_wall"],
        **_lag(r["lag"]),
        "main_cpu": r["run_cpu"],
        "main_pct": 100 * r["run_cpu"] / r["run_wall"],
        "main_rss": r["maxrss_mb"],
        "extract_cpu": got["tree_cpu"] - got["main_total_cpu"],
        "server_cpu": got["server_cpu"],
        "foreign": got["foreign"],
    }


def download(ctx: Context, variant: str, concurrency: int = 64) -> dict[str, Any]:
    folder = _scratch(ctx, f"dl-{variant}")
    report = folder / "report.json"
    cmd = [PY, "-m", "bench.download", str(report), str(_urls(ctx, ctx.download_items, folder))]
    cmd += [str(folder / "out"), "--variant", variant, "--concurrency", str(concurrency)]
    env_extra = {}
    if variant in ("tuned", "rpa-sniffio") and ctx.deps is not None:
        env_extra["PYTHONPATH"] = str(ctx.deps)
    got = _measured_env(ctx, cmd, report, env_extra)
    r = got["report"]
    shutil.rmtree(folder, ignore_errors=True)
    gb = r["bytes"] / 1e9
    return {
        "mb_s": r["bytes"] / 1e6 / r["wall"],
        "cpu_per_gb": r["cpu"] / gb,
        "bytes": r["bytes"],
        "files": r["files"],
        "sniffio": r["sniffio"],
        "server_cpu_per_gb": got["server_cpu"] / gb,
        "foreign": got["foreign"],
    }


def _measured_env(
    ctx: Context, cmd: Sequence[str], report: Path, extra: dict[str, str]
) -> dict[str, Any]:
    if not extra:
        return _measured(ctx, cmd, report)
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)  # run_measured appends the repo to PYTHONPATH
    try:
        return _measured(ctx, cmd, report)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def ensure_sniffio(folder: Path) -> Path | None:
    """A private folder with sniffio (pip install --target), for the tuned variants only."""
    if (folder / "sniffio").is_dir():
        return folder
    done = subprocess.run(
        [PY, "-m", "pip", "install", "--quiet", "--target", str(folder), "sniffio"],
        capture_output=True,
        text=True,
        check=False,
    )
    return folder if done.returncode == 0 else None


def queue_cmd(ctx: Context, *args: str, report: Path | None = None) -> dict[str, Any]:
    cmd = [PY, "-m", "bench.queue_bench", *args]
    if report is None:
        subprocess.run(cmd, check=True, cwd=REPO, env={**clean_env(), "PYTHONPATH": str(REPO)})
        return {}
    return _measured(ctx, cmd, report)


def status_cli(ctx: Context, db: Path, as_json: bool) -> dict[str, Any]:
    """`rpa status` as a user runs it: a new process (`python -m rpa status`), imports included."""
    cmd = [PY, "-m", "rpa", "status", "--db", str(db), *(["--json"] if as_json else [])]
    wait_quiet(min(ctx.quiet_wait, 5.0))
    m = run_measured(cmd, env=clean_env(), nice=ctx.nice)
    if m.returncode != 0:
        raise RuntimeError(f"rpa status failed ({m.returncode}): {m.stderr[-2000:]}")
    return {"seconds": m.wall, "rss": m.main_maxrss_mb, "foreign": m.foreign_cpu / m.wall}
