"""Where the time goes, for the targets a run missed (`python -m bench.run --profile`).

* rpa end to end: one extra `rpa run` per extractor (pypdf, pdfium) sampled by py-spy
  (`record --nonblocking --threads`, so the process is never paused and the lag it reports is
  not ours); stacks are sorted by thread kind (the event loop's thread, the database thread,
  the I/O pool) and the loop thread's heaviest functions are listed. The collapsed stacks are
  kept beside the report for speedscope / flamegraph.pl. Those runs are not counted in the
  figures.
* enqueue: cProfile around `enqueue_file` on a fresh database.
* `rpa status`: `python -X importtime` of the command (its start-up is part of its time).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import arms
from bench.common import PY
from bench.rpa_main import _group

__all__ = ["profile_enqueue", "profile_rpa", "status_imports", "summarize_stacks"]

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")
_THREAD = re.compile(r"^thread \(\d+\): (?P<name>.+)$")
#: files whose frames are worth naming in the loop thread's inclusive list
_INTERESTING = ("/rpa/", "httpx", "httpcore", "anyio", "h11", "selector_events", "pickle", "json")
_DRIVERS = ("rpa/cli/", "bench/")
#: the loop waiting for events: idle, not work (py-spy may still sample it)
_IDLE = re.compile(r"\.(select|poll) \([^)]*selectors\.py")


def _py_spy() -> str | None:
    found = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    return found if Path(found).exists() else None


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = Path(m["file"])
    return f"{m['func']} ({path.parent.name}/{path.name})"


def summarize_stacks(raw: Path, top: int = 14) -> dict[str, Any]:
    """Collapsed stacks (py-spy raw, --threads) -> busy samples per thread group; the event
    loop thread's heaviest frames (self, and inclusive over rpa/httpx/httpcore/anyio...)."""
    kinds: Counter[str] = Counter()
    loop_self: Counter[str] = Counter()
    loop_incl: Counter[str] = Counter()
    idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        m = _THREAD.match(frames[0])
        kind = _group(m["name"]) if m else "other"
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if kind.startswith("event loop") and frames and _IDLE.search(_short(frames[-1])):
            idle += n
            continue
        kinds[kind] += n
        if kind.startswith("event loop") and frames:
            loop_self[_short(frames[-1])] += n
            named = {
                _short(f)
                for f in frames
                if any(k in f for k in _INTERESTING) and not any(d in f for d in _DRIVERS)
            }
            for frame in named:
                loop_incl[frame] += n
    loop_total = sum(n for k, n in kinds.items() if k.startswith("event loop")) or 1
    return {
        "kinds": dict(kinds),
        "idle": idle,
        "loop_total": loop_total,
        "loop_self": [(f, round(100 * c / loop_total, 1)) for f, c in loop_self.most_common(top)],
        "loop_inclusive": [
            (f, round(100 * c / loop_total, 1)) for f, c in loop_incl.most_common(top)
        ],
    }


def profile_rpa(ctx: arms.Context, keep: Path, extractor: str = "pypdf", rate: int = 100) -> str:
    spy = _py_spy()
    if spy is None:
        return "py-spy is not installed: no profile of the rpa run."
    keep.parent.mkdir(parents=True, exist_ok=True)
    pid_file = Path(tempfile.mkdtemp(prefix="spy-", dir=ctx.scratch)) / "pid"
    holder: dict[str, subprocess.Popen[bytes]] = {}

    def attach() -> None:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_file.exists():
            pid = pid_file.read_text().strip()
            cmd = [spy, "record", "--pid", pid, "--nonblocking", "--threads"]
            cmd += ["--rate", str(rate), "--format", "raw", "--output", str(keep)]
            holder["spy"] = subprocess.Popen(
                cmd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    thread = threading.Thread(target=attach)
    thread.start()
    figures = arms.rpa(ctx, extractor, pid_file=pid_file)
    thread.join()
    if "spy" in holder:
        holder["spy"].wait(timeout=60)
    if not keep.exists():
        return "py-spy recorded nothing (is ptrace allowed here?)."
    s = summarize_stacks(keep)
    total = sum(s["kinds"].values()) or 1
    lines = [
        f"**rpa run ({extractor}), py-spy {rate} Hz, non-blocking** — that run: "
        f"{figures['pages_s']:.1f} pages/s, lag p99 {figures['lag_p99']:.1f} ms, max "
        f"{figures['lag_max']:.0f} ms, main CPU {figures['main_pct']:.1f} % of a core. "
        f"Collapsed stacks: `{keep.name}`.\n",
        "Busy samples of the main process by thread: "
        + ", ".join(f"{k} {100 * v / total:.0f} %" for k, v in Counter(s["kinds"]).most_common())
        + f" ({total} samples = {total / rate:.1f} CPU-s; the loop's {s['idle']} samples "
        "waiting in select() left out).\n",
        "Event-loop thread, self time (% of its busy samples): "
        + "; ".join(f"{f} {p} %" for f, p in s["loop_self"])
        + ".\n",
        "Event-loop thread, inclusive: "
        + "; ".join(f"{f} {p} %" for f, p in s["loop_inclusive"])
        + ".\n",
    ]
    return "\n".join(lines)


def profile_enqueue(ids: Path, scratch: Path, top: int = 12) -> str:
    db = Path(tempfile.mkdtemp(prefix="enq-prof-", dir=scratch)) / "q.db"
    code = (
        "import cProfile, pstats, sys\n"
        "from pathlib import Path\n"
        "from rpa.queue.enqueue import enqueue_file\n"
        "p = cProfile.Profile(); p.enable()\n"
        f"enqueue_file(Path({str(db)!r}), Path({str(ids)!r}))\n"
        "p.disable()\n"
        f"pstats.Stats(p).sort_stats('tottime').print_stats({top})\n"
    )
    done = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=False)
    shutil.rmtree(db.parent, ignore_errors=True)
    body = done.stdout.strip().splitlines()
    keep = [ln for ln in body if ln.strip()][: top + 8]
    return "**enqueue (cProfile, by own time)**\n\n```\n" + "\n".join(keep) + "\n```\n"


def status_imports(db: Path, top: int = 10) -> str:
    done = subprocess.run(
        [PY, "-X", "importtime", "-m", "rpa", "status", "--db", str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    rows = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2].rstrip()
            if not name.startswith("  "):  # top-level imports only (cumulative)
                rows.append((int(parts[1]), name.strip()))
    rows.sort(reverse=True)
    total = sum(us for us, _ in rows)
    listing = ", ".join(f"{name} {us / 1000:.0f} ms" for us, name in rows[:top])
    return (
        f"**`rpa status` start-up (python -X importtime)**: top-level imports {total / 1000:.0f} "
        f"ms cumulative; heaviest: {listing}.\n"
    )
