"""The benchmark, one command: `.venv/bin/python -m bench.run` (from the repository root).

    python -m bench.run [--repeat N] [--quick] [--sections 1,2,3,4,5,6] [--profile]

Writes bench/results/<date>.md (and the raw figures as .json beside it) and prints the
markdown. See bench/README.md for what each section measures and how.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import arms, profile
from bench.common import PY, REPO, load_papers, machine_info, make_items
from bench.report import render
from bench.server import Server

RESULTS = REPO / "bench" / "results"
CACHE = REPO / "bench" / ".cache"
DOWNLOAD_VARIANTS = ("rpa", "rpa-client", "one-pool", "httpx-defaults", "tuned", "rpa-sniffio")


def _arms_for(sections: set[int]) -> list[str]:
    names: list[str] = []
    if sections & {1, 2, 3}:
        names.append("ceiling:pypdf")  # the ratios need it, whatever else runs
    if 1 in sections:
        names += ["single:pypdf", "fn:pypdf", "ceiling:pdfium", "single:pdfium"]
    if 2 in sections:
        names += ["rpa:pypdf", "rpa:pdfium"]
    if 3 in sections:
        names += ["naive:blocking", "naive:threads"]
    return names


def _run_arm(ctx: arms.Context, name: str) -> dict[str, Any]:
    kind, what = name.split(":")
    workers = ctx.extract_workers or os.cpu_count() or 1
    if kind == "ceiling":
        return arms.ceiling(ctx, what, workers)
    if kind == "single":
        return arms.ceiling(ctx, what, 1)
    if kind == "fn":
        return arms.ceiling(ctx, what, workers, work="rpa")
    if kind == "rpa":
        return arms.rpa(ctx, what)
    return arms.naive(ctx, what)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _ensure_tools(want_profile: bool) -> list[str]:
    """Bench-only packages, installed into the venv when missing (see README)."""
    notes = []
    if want_profile and shutil.which("py-spy", path=str(Path(PY).parent)) is None:
        done = subprocess.run(
            [PY, "-m", "pip", "install", "--quiet", "py-spy"], capture_output=True, check=False
        )
        if done.returncode != 0:
            notes.append("py-spy could not be installed: no rpa profile")
    return notes


def run(args: argparse.Namespace) -> dict[str, Any]:
    sections = {int(s) for s in args.sections.split(",") if s.strip()}
    papers = load_papers()
    scratch = Path(tempfile.mkdtemp(prefix="rpa-bench-"))
    scratch.chmod(0o755)
    pdfium_copies = args.pdfium_copies or 10 * args.copies
    copies_needed = max(args.copies, args.download_copies, pdfium_copies)
    mirror_dir = scratch / "mirror"
    all_items = make_items(papers, copies_needed, mirror_dir)
    n = len(papers)
    items = all_items[: n * args.copies]
    results: dict[str, Any] = {"machine": machine_info(), "notes": _ensure_tools(args.profile)}
    try:
        with Server(mirror_dir, args.server, nice=args.nice) as server:
            results["notes"] += server.notes
            ctx = arms.Context(
                items=items,
                fast_items=all_items[: n * pdfium_copies],
                single=all_items[:n],
                download_items=all_items[: n * args.download_copies],
                server=server,
                scratch=scratch,
                workers=args.workers,
                extract_workers=args.extract_workers,
                quiet_wait=args.quiet_wait,
                nice=args.nice,
            )
            results["config"] = _config(args, ctx, papers, server.kind)
            names = _arms_for(sections)
            if names:
                _section(results, "arms", lambda: _interleaved(ctx, names, args.repeat))
            if 4 in sections:
                ctx.deps = arms.ensure_sniffio(CACHE / "deps")
                if ctx.deps is None:
                    results["notes"].append("sniffio could not be installed for the tuned runs")
                _section(results, "download", lambda: _interleaved_download(ctx, args.repeat))
            if 5 in sections:
                _section(results, "queue", lambda: _queue(ctx, args))
            if 6 in sections:
                _section(results, "quality", lambda: _quality(scratch))
            if args.profile:
                _section(results, "profile", lambda: _profiles(ctx, args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _section(results: dict[str, Any], key: str, fn: Callable[[], Any]) -> None:
    """Run one section; a failure is reported, and the other sections still run."""
    try:
        results[key] = fn()
    except Exception as exc:  # a broken section must not lose the others' figures
        _log(f"section {key} failed: {exc}")
        results["notes"].append(f"section {key} failed: {str(exc)[:500]}")


def _quality(scratch: Path) -> dict[str, Any]:
    _log("quality: pypdf vs pdfium on every paper")
    report = scratch / "quality.json"
    subprocess.run([PY, "-m", "bench.quality", str(report)], check=True, cwd=REPO)
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def _config(
    args: argparse.Namespace, ctx: arms.Context, papers: list[Any], server: str
) -> dict[str, Any]:
    return {
        "command": "python -m bench.run " + " ".join(sys.argv[1:]),
        "server": server,
        "papers": len(papers),
        "pages_per_copy": sum(p.pages for p in papers),
        "mb_per_copy": sum(p.bytes for p in papers) / 1e6,
        "copies": args.copies,
        "pdfium_copies": len(ctx.fast_items) // len(papers),
        "jobs": len(ctx.items),
        "pages": ctx.pages,
        "repeat": args.repeat,
        "nice": args.nice,
        "extract_workers": ctx.extract_workers or os.cpu_count(),
        "download_concurrency": 64,
        "download_files": len(ctx.download_items),
        "download_mb": sum(i.bytes for i in ctx.download_items) / 1e6,
    }


def _schedule(names: list[str], rep: int) -> list[str]:
    """The order of the arms in repeat `rep`: rpa:X runs right next to ceiling:X (the two
    figures of a ratio), first one then the other in turn; the groups rotate every repeat.

    This machine's speed drifts by 10-20 % over minutes with no load of its own to show for
    it (neighbours on the host), so the runs a ratio divides must be adjacent in time.
    """
    groups: list[list[str]] = []
    for name in names:
        kind, what = name.split(":")
        if kind == "rpa" and f"ceiling:{what}" in names:
            continue  # placed with its ceiling
        if kind == "ceiling" and f"rpa:{what}" in names:
            pair = [name, f"rpa:{what}"]
            groups.append(pair if rep % 2 == 0 else pair[::-1])
        else:
            groups.append([name])
    k = rep % len(groups)
    return [name for group in groups[k:] + groups[:k] for name in group]


def _interleaved(ctx: arms.Context, names: list[str], repeat: int) -> dict[str, list[Any]]:
    """Every arm once per repeat, in `_schedule`'s order."""
    out: dict[str, list[Any]] = {name: [] for name in names}
    for rep in range(repeat):
        for name in _schedule(names, rep):
            _log(f"repeat {rep + 1}/{repeat}: {name}")
            figures = _run_arm(ctx, name)
            figures["repeat"] = rep
            out[name].append(figures)
            _log(f"  {_brief(figures)}")
    # Store in repeat order, so ratios pair runs of the same repeat.
    return {name: sorted(runs, key=lambda r: r["repeat"]) for name, runs in out.items()}


def _brief(figures: dict[str, Any]) -> str:
    keys = ("pages_s", "lag_p99", "lag_max", "main_pct", "mb_s", "cpu_per_gb", "foreign")
    return ", ".join(f"{k} {figures[k]:.2f}" for k in keys if k in figures)


def _interleaved_download(ctx: arms.Context, repeat: int) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {v: [] for v in DOWNLOAD_VARIANTS}
    names = list(DOWNLOAD_VARIANTS)
    for rep in range(repeat):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            _log(f"repeat {rep + 1}/{repeat}: download {name}")
            figures = arms.download(ctx, name)
            out[name].append(figures)
            _log(f"  {_brief(figures)}")
    return out


def _queue(ctx: arms.Context, args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="queue-", dir=ctx.scratch))
    out: dict[str, Any] = {"ids": args.queue_ids, "claim": [], "enqueue": []}
    for rep in range(args.repeat):
        _log(f"repeat {rep + 1}/{args.repeat}: queue claim+complete")
        db = folder / f"claim-{rep}"
        got = arms.queue_cmd(
            ctx, "claim", str(folder / "c.json"), str(db), "--jobs", str(args.claim_jobs),
            report=folder / "c.json",
        )  # fmt: skip
        out["claim"].append(got["report"])
    ids = folder / "ids.txt"
    arms.queue_cmd(ctx, "ids", str(ids), "--count", str(args.queue_ids))
    db = folder / "enqueue.db"
    for rep in range(args.repeat):
        _log(f"repeat {rep + 1}/{args.repeat}: enqueue {args.queue_ids:,} IDs")
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        got = arms.queue_cmd(ctx, "enqueue", str(folder / "e.json"), str(db), str(ids),
                             report=folder / "e.json")  # fmt: skip
        got["report"]["foreign"] = got["foreign"]
        out["enqueue"].append(got["report"])
    _log("status: populating the database as a queue in mid-run")
    arms.queue_cmd(ctx, "populate", str(db))
    out["status_db"] = str(db)
    out["status_inproc"], out["status_cli"], out["status_json"] = [], [], []
    for rep in range(args.repeat):
        _log(f"repeat {rep + 1}/{args.repeat}: status")
        got = arms.queue_cmd(ctx, "status", str(folder / "s.json"), str(db),
                             report=folder / "s.json")  # fmt: skip
        out["status_inproc"].append(got["report"])
        out["status_cli"].append(arms.status_cli(ctx, db, as_json=False))
        out["status_json"].append(arms.status_cli(ctx, db, as_json=True))
    out["_folder"] = str(folder)
    return out


def _profiles(ctx: arms.Context, args: argparse.Namespace) -> str:
    parts = []
    stamp = time.strftime("%Y-%m-%d")
    for extractor in ("pypdf", "pdfium"):
        _log(f"profile: one extra rpa run ({extractor}) under py-spy")
        keep = RESULTS / f"profile-{stamp}-rpa-{extractor}.txt"
        parts.append(profile.profile_rpa(ctx, keep, extractor))
    folder = Path(tempfile.mkdtemp(prefix="prof-", dir=ctx.scratch))
    ids = folder / "ids.txt"
    arms.queue_cmd(ctx, "ids", str(ids), "--count", str(args.queue_ids))
    _log("profile: enqueue under cProfile")
    parts.append(profile.profile_enqueue(ids, folder))
    db = folder / "status.db"
    arms.queue_cmd(ctx, "enqueue", str(folder / "e.json"), str(db), str(ids),
                   report=folder / "e.json")  # fmt: skip
    arms.queue_cmd(ctx, "populate", str(db))
    parts.append(profile.status_imports(db))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description="rpa's benchmark (see bench/README.md)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of every figure")
    parser.add_argument("--quick", action="store_true", help="1 repeat, small sizes: a smoke run")
    parser.add_argument("--sections", default="1,2,3,4,5,6", help="which sections, e.g. 1,2,3")
    parser.add_argument("--copies", type=int, default=4, help="copies of the corpus end to end")
    parser.add_argument(
        "--pdfium-copies", type=int, default=0, help="copies for pdfium arms (0 = 10 x --copies)"
    )
    parser.add_argument("--download-copies", type=int, default=20, help="copies for section 4")
    parser.add_argument("--queue-ids", type=int, default=1_000_000)
    parser.add_argument("--claim-jobs", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=200, help="rpa/naive workers")
    parser.add_argument("--extract-workers", type=int, default=0, help="0 = one per core")
    parser.add_argument("--server", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument(
        "--quiet-wait", type=float, default=15.0, help="max s to wait for a quiet machine per arm"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness increment for every measured run; negative (root) shields the "
        "figures from other programs on a shared machine, at their expense",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy/cProfile evidence too")
    parser.add_argument("--output", type=Path, help="report path (default bench/results/<date>.md)")
    parser.add_argument("--render", type=Path, help="only re-render a results .json as markdown")
    args = parser.parse_args(argv)
    if args.render is not None:
        print(render(json.loads(args.render.read_text())))
        return 0
    # SIGTERM (or SIGINT, ignored in a background job) ends the run through the finally
    # blocks: the mirror is stopped and the scratch folder removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.repeat, args.copies, args.download_copies = 1, 1, 4
        args.queue_ids, args.claim_jobs = min(args.queue_ids, 100_000), 5_000
    results = run(args)
    suffix = "-quick" if args.quick else ""
    path = args.output or RESULTS / f"{time.strftime('%Y-%m-%d')}{suffix}.md"
    text = render(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    print(text)
    _log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
