"""`--processes 2` on small queues: the whole run's wall time and who did the papers.

    .venv/bin/python -m bench.group_tail                          # this checkout, 5 repeats
    .venv/bin/python -m bench.group_tail --before /tmp/before     # and another, interleaved

The real papers of `../shared/corpus/real` (32), once and three times over (96 jobs), served
by rpa's loopback mirror; each run is the real CLI as a whole process, `rpa run ids.txt
--processes 2 --extractor pdfium --rate-limits '' --no-progress` on a fresh SQLite queue, from
127.0.0.1 only. It prints each run's wall time and how many papers each of the group's two
processes recorded, then the medians. With `--before`, that checkout's `rpa/` runs the same
queue right before this one's, every repeat: a ratio side by side, not across minutes.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import CORPUS, PY, REPO, clean_env, compile_tree
from rpa.testing.mirror import Mirror


def _run(tree: Path, files: dict[str, Path], template: str) -> tuple[float, list[int]]:
    folder = Path(tempfile.mkdtemp(prefix="rpa-group-tail-"))
    try:
        ids = folder / "ids.txt"
        ids.write_text("".join(f"ext:{k}\n" for k in files))
        env = clean_env() | {"PYTHONPATH": str(tree)}
        cmd = [PY, "-m", "rpa", "run", str(ids), "--db", str(folder / "q.db"),
               "--out", str(folder / "out"), "--pdf-url", template, "--processes", "2",
               "--extractor", "pdfium", "--rate-limits", "", "--no-progress"]  # fmt: skip
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=folder)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"rpa failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        with sqlite3.connect(folder / "q.db") as db:
            split = db.execute(
                "SELECT count(*) FROM attempts WHERE stage = 'outcome' AND outcome = 'ok' "
                "GROUP BY run_id"
            ).fetchall()
        return wall, sorted(n for (n,) in split)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout, run side by side")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    trees = {"this": REPO} | ({"before": args.before} if args.before else {})
    for tree in trees.values():
        compile_tree(tree)
    real = sorted(CORPUS.glob("*.pdf"))
    walls: dict[tuple[int, str], list[float]] = {}
    for copies in (1, 3):
        files = {f"c{k}-{p.stem}": p for k in range(copies) for p in real}
        with Mirror(files) as mirror:
            for rep in range(args.repeat):
                for name in sorted(trees):  # "before" first
                    wall, split = _run(trees[name], files, mirror.url_template)
                    walls.setdefault((len(files), name), []).append(wall)
                    print(f"{len(files)} jobs  {name:6}  run {rep + 1}: {wall:.2f} s, "
                          f"papers a process {split}", flush=True)  # fmt: skip
    for (jobs, name), values in sorted(walls.items()):
        print(f"{jobs} jobs  {name:6}  median {statistics.median(values):.2f} s "
              f"({min(values):.2f}-{max(values):.2f}, n={len(values)})")  # fmt: skip


if __name__ == "__main__":
    main()
