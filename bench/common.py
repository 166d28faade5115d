"""Shared parts of the benchmark: the corpus, measured subprocesses, statistics, machine facts.

Every figure comes from a fresh subprocess started through `bench.measure` (a child subreaper),
so the CPU time of a whole process tree is counted, extraction processes included, and the CPU
that other programs on the machine used meanwhile is known ("foreign load").
"""

from __future__ import annotations

import csv
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "CORPUS",
    "PY",
    "REPO",
    "Item",
    "Measured",
    "Paper",
    "Series",
    "build_tars",
    "clean_env",
    "compile_tree",
    "load_papers",
    "machine_info",
    "make_items",
    "run_measured",
]

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "real"
MANIFEST = CORPUS.parent / "manifest.tsv"
PY = sys.executable
_SLUG_BAD = re.compile(r"[^a-z0-9._-]+")
#: YYMM of the first paper of the tars `build_tars` makes (new-style IDs, 5 digits)
_MONTH_START = 2101


@dataclass(frozen=True, slots=True)
class Paper:
    """One real paper of the corpus (pages and bytes from the corpus manifest)."""

    path: Path
    slug: str
    pages: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Item:
    """One job of a benchmark run: a served copy of a paper under its own name."""

    name: str  # the mirror stem, also the ext: slug
    path: Path  # the local file (a symlink to the corpus paper)
    pages: int
    bytes: int

    @property
    def rpa_id(self) -> str:
        return f"ext:{self.name}"


def slug(filename: str) -> str:
    """A mirror stem rpa accepts as an ext: slug: [a-z0-9][a-z0-9._-]*."""
    stem = _SLUG_BAD.sub("-", Path(filename).stem.lower()).strip("-._")
    return stem or "paper"


def load_papers(corpus: Path = CORPUS) -> list[Paper]:
    """The real papers, in manifest order. Never synthetic PDFs: they time ~15x too fast."""
    manifest = corpus.parent / "manifest.tsv"
    if not manifest.exists():
        raise SystemExit(f"bench: no corpus manifest at {manifest} (needs ../shared/corpus)")
    papers = []
    with manifest.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["kind"] != "real":
                continue
            path = corpus / row["filename"]
            papers.append(Paper(path, slug(row["filename"]), int(row["pages"]), int(row["bytes"])))
    return papers


def make_items(papers: Sequence[Paper], copies: int, directory: Path) -> list[Item]:
    """Symlink each paper `copies` times into `directory` as c<k>-<slug>.pdf.

    Copies are interleaved (all papers of copy 0, then copy 1...) so every stretch of a run
    sees the same mix of papers.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)  # nginx workers run as an unprivileged user
    items = []
    for k in range(copies):
        for paper in papers:
            name = f"c{k}-{paper.slug}"
            link = directory / f"{name}.pdf"
            if not link.exists():
                link.symlink_to(paper.path.resolve())
            items.append(Item(name, link, paper.pages, paper.bytes))
    return items


def build_tars(paths: list[Path], folder: Path, per_tar: int) -> Path:
    """arXiv-style bulk tars of the files `paths` (copies of the real papers), as arXiv names
    them: arXiv_pdf_YYMM_NNN.tar holding YYMM/YYMM.NNNNN.pdf, one month per 99,999 papers,
    `per_tar` papers a tar (0: one tar a month). Returns the glob for `--pdf-tar`."""
    folder.mkdir(parents=True, exist_ok=True)
    chunks: dict[tuple[int, int], list[tuple[str, Path]]] = {}
    for k, path in enumerate(paths):
        month = _MONTH_START + k // 99_999
        number = k % 99_999 + 1
        chunk = (month, (number - 1) // per_tar + 1 if per_tar > 0 else 1)
        chunks.setdefault(chunk, []).append((f"{month}/{month}.{number:05d}.pdf", path))
    for (month, seq), members in chunks.items():
        tar_file = folder / f"arXiv_pdf_{month}_{seq:03d}.tar"
        with tarfile.open(tar_file, "w", format=tarfile.USTAR_FORMAT) as tar:
            folder_info = tarfile.TarInfo(str(month))
            folder_info.type = tarfile.DIRTYPE
            folder_info.mode = 0o755
            tar.addfile(folder_info)
            for name, path in members:
                info = tarfile.TarInfo(name)
                info.size = path.stat().st_size
                info.mode = 0o644
                info.mtime = int(path.stat().st_mtime)
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    return folder / "arXiv_pdf_*.tar"


# ---------------------------------------------------------------------- measured runs


@dataclass(slots=True)
class Measured:
    """What `bench.measure` saw of one command, and what the command reported itself."""

    returncode: int
    wall: float  # seconds from start to the exit of the direct child
    tree_cpu: float  # user+system seconds of every process of the tree
    main_cpu: float  # user+system seconds of the direct child (and what it reaped itself)
    main_maxrss_mb: float
    max_rss_any_mb: float
    foreign_cpu: float  # CPU seconds other programs used on the machine meanwhile
    report: dict[str, Any] = field(default_factory=dict)  # the command's own JSON, if any
    stdout: str = ""
    stderr: str = ""


def run_measured(
    cmd: Sequence[str],
    *,
    report: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600.0,
    pid_file: Path | None = None,
    nice: int = 0,
) -> Measured:
    """Run `cmd` under `python -m bench.measure` and collect its figures."""
    with tempfile.TemporaryDirectory(prefix="rpa-bench-m-") as tmp:
        out = Path(tmp) / "measure.json"
        wrapper = [PY, "-m", "bench.measure"]
        if pid_file is not None:
            wrapper += ["--pid-file", str(pid_file)]
        if nice:
            wrapper += ["--nice", str(nice)]
        wrapper.append(str(out))
        full_env = dict(os.environ if env is None else env)
        # bench.measure is this checkout's; last, so that a --tree's rpa stays first for `cmd`
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (full_env.get("PYTHONPATH", ""), str(REPO)) if p
        )
        proc = subprocess.run(
            [*wrapper, "--", *cmd],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if not out.exists():
            raise RuntimeError(f"bench.measure failed ({proc.returncode}): {proc.stderr[-2000:]}")
        data = json.loads(out.read_text())
    got: dict[str, Any] = {}
    if report is not None and report.exists():
        got = json.loads(report.read_text())
    return Measured(
        returncode=data["returncode"],
        wall=data["wall"],
        tree_cpu=data["tree_cpu"],
        main_cpu=data["main_cpu"],
        main_maxrss_mb=data["main_maxrss_kb"] / 1024,
        max_rss_any_mb=data["max_rss_any_kb"] / 1024,
        foreign_cpu=data["foreign_cpu"],
        report=got,
        stdout=proc.stdout,
        stderr=proc.stderr,
    )


def clean_env() -> dict[str, str]:
    """The environment without RPA_* knobs, so a developer's settings cannot skew a run; and
    with bytecode caches written and read, as a user's runs after the first have them (this
    machine's shell sets PYTHONDONTWRITEBYTECODE: each run then compiled rpa's ~140 modules
    again, ~0.1 s of the main process's CPU)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPA_")}
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def compile_tree(tree: Path) -> None:
    """Compile `tree`'s rpa package once, before any measured run (see clean_env)."""
    subprocess.run([PY, "-m", "compileall", "-q", str(tree / "rpa")], check=True,
                   env=clean_env(), stdout=subprocess.DEVNULL)  # fmt: skip


# ---------------------------------------------------------------------- statistics


@dataclass(slots=True)
class Series:
    """Repeated measurements of one figure."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self, fmt: str) -> str:
        if len(self.values) < 2:
            return "n=1"
        lo, hi = min(self.values), max(self.values)
        return f"{fmt.format(lo)}–{fmt.format(hi)}, n={len(self.values)}"


# ---------------------------------------------------------------------- the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, str]:
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    load = os.getloadavg()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{cpu_model()}, {os.cpu_count()} cores",
        "memory": f"{mem_gb:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": ", ".join(
            f"{d} {_version(d)}" for d in ("pypdf", "pypdfium2", "httpx", "httpcore", "rpa")
        ),
        "load average at start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        "git": _git_head(),
    }


def _git_head() -> str:
    git = shutil.which("git")
    if git is None:
        return "?"
    try:
        head = subprocess.run(
            [git, "-C", str(REPO), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            [git, "-C", str(REPO), "status", "--porcelain", "--", "rpa"],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return head + (" (rpa/ has uncommitted changes)" if dirty else "")
