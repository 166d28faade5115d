"""Title, authors, abstract and headings found vs the truth, before and after a change.

    python -m bench.quality_text [--extractor pypdf|pdfium] [--before REV] [--no-metadata]

For every bundled sample (rpa/samples) and every real paper of ../shared/corpus/real (when it
is there), the truth read off the paper's first pages (tests/data/truth.json) is compared
with what `analyze` finds, for the current code ("after") and for the code at REV ("before",
loaded from `git show REV:rpa/extract/outcome.py`, or REV's outcome package, into a temporary
module). Each paper is extracted once, with rpa's own `extract_pdf`, into a temporary folder;
both versions analyse the same pages, read back from the text file (split at its "[PAGE n]"
lines), and the same /Info metadata (none with --no-metadata: text alone, as for a PDF
whose producer left /Title and /Author empty).

REV defaults to the commit this work started from (the other engineer keeps committing, so
"HEAD" would move). Prints a markdown table per paper ("before→after" in each cell) and the
totals for the samples, the corpus and both; see rpa.extract.outcome.score for what counts.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from rpa.extract.outcome import analyze
from rpa.extract.outcome.score import Score, is_truth_key, score
from rpa.extract.pdf import extract_pdf

__all__ = ["DEFAULT_BEFORE", "load_before", "main", "read_pages"]

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "rpa" / "samples"
CORPUS = REPO.parent / "shared" / "corpus" / "real"
TRUTH = REPO / "tests" / "data" / "truth.json"
#: the commit before rpa.extract.outcome became a package with authors and headless abstracts
DEFAULT_BEFORE = "1f25f74cff7cfc29e8810435344e322aade91146"
_PAGE = re.compile(r"^\[PAGE \d+\]\n", re.MULTILINE)

Analyze = Callable[[list[str], dict[str, str]], dict[str, object]]


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], check=True, capture_output=True, text=True
    ).stdout


def load_before(rev: str, folder: Path) -> Analyze:
    """`analyze` as it was at `rev`: the single module, or the package's files, written to
    `folder` and imported under a name of their own."""
    name = f"rpa_outcome_{re.sub(r'[^0-9A-Za-z]', '_', rev)[:40]}"
    try:
        source = _git("show", f"{rev}:rpa/extract/outcome.py")
    except subprocess.CalledProcessError:
        source = ""
    if source:
        path = folder / f"{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
    else:
        package = folder / name
        package.mkdir()
        files = _git("ls-tree", "--name-only", rev, "rpa/extract/outcome/").split()
        for file in files:
            if file.endswith(".py"):
                text = _git("show", f"{rev}:{file}")
                (package / Path(file).name).write_text(text, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(
            name, package / "__init__.py", submodule_search_locations=[str(package)]
        )
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load rpa/extract/outcome at {rev}")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the package's relative imports look it up there
    spec.loader.exec_module(module)
    before: Analyze = module.analyze
    return before


def read_pages(text_path: Path) -> list[str]:
    """The pages of an rpa text file: each page follows its "[PAGE n]" line."""
    body = text_path.read_text(encoding="utf-8")
    return [p.removesuffix("\n") for p in _PAGE.split(body)[1:]]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _metadata(pdf: Path, extractor: str) -> dict[str, str]:
    """The /Info metadata as rpa.extract.pdf hands it to `analyze` for this extractor."""
    with _quiet(), contextlib.suppress(Exception):
        if extractor == "pdfium":
            import pypdfium2 as pdfium

            doc = pdfium.PdfDocument(str(pdf))
            try:
                return {f"/{k}": str(v) for k, v in doc.get_metadata_dict().items()}
            finally:
                doc.close()
        from pypdf import PdfReader

        return {str(k): str(v) for k, v in (PdfReader(pdf).metadata or {}).items()}
    return {}


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    group: str
    before: Score
    after: Score


def _papers() -> list[tuple[str, Path]]:
    papers = [("samples", p) for p in sorted(SAMPLES.glob("*.pdf"))]
    if CORPUS.is_dir():
        papers += [("corpus", p) for p in sorted(CORPUS.glob("*.pdf"))]
    return papers


def measure(
    extractor: str, before: Analyze, truth: dict[str, Any], folder: Path, metadata: bool = True
) -> list[Row]:
    rows = []
    for group, pdf in _papers():
        if pdf.stem not in truth:
            print(f"no truth for {pdf.stem}: skipped", file=sys.stderr)
            continue
        text = folder / f"{pdf.stem}.txt"
        result = extract_pdf(str(pdf), str(text), extractor)
        if not result["ok"]:
            print(f"{pdf.stem}: {result.get('message')}", file=sys.stderr)
            continue
        pages = read_pages(text)
        info = _metadata(pdf, extractor) if metadata else {}
        truth_row = truth[pdf.stem]
        rows.append(
            Row(
                pdf.stem,
                group,
                score(before(pages, info), truth_row),
                score(analyze(pages, info), truth_row),
            )
        )
    return rows


def _mark(value: bool | None) -> str:
    return "–" if value is None else "✓" if value else "✗"


def _cell(before: bool | None, after: bool | None) -> str:
    return f"{_mark(before)}→{_mark(after)}"


_FIELDS = (
    "title",
    "first_author",
    "all_authors",
    "abstract_found",
    "abstract_start",
    "abstract_end",
)


def table(rows: list[Row]) -> str:
    head = "| paper | title | 1st author | all authors | abstract | start | end | headings |"
    out = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [_cell(getattr(r.before, f), getattr(r.after, f)) for f in _FIELDS]
        heads = f"{r.before.headings_found}→{r.after.headings_found}/{r.after.headings_true}"
        out.append(f"| {r.name} | {' | '.join(cells)} | {heads} |")
    return "\n".join(out)


def _count(scores: list[Score], field: str) -> str:
    values = [getattr(s, field) for s in scores if getattr(s, field) is not None]
    return f"{sum(values)}/{len(values)}"


def totals(rows: list[Row]) -> str:
    out = [
        "| set | version | title | 1st author | all authors | abstract | start | end "
        "| headings recall (mean) | headings (all) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups = [(g, [r for r in rows if r.group == g]) for g in ("samples", "corpus")]
    for group, members in [*groups, ("all", rows)]:
        if not members:
            continue
        for version in ("before", "after"):
            scores: list[Score] = [getattr(r, version) for r in members]
            mean = sum(s.headings_recall for s in scores) / len(scores)
            found = sum(s.headings_found for s in scores)
            true = sum(s.headings_true for s in scores)
            cells = [_count(scores, f) for f in _FIELDS]
            out.append(
                f"| {group} ({len(members)}) | {version} | {' | '.join(cells)} "
                f"| {mean:.2f} | {found}/{true} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality_text", description=__doc__)
    parser.add_argument("--extractor", choices=("pypdf", "pdfium"), default="pypdf")
    parser.add_argument("--before", default=DEFAULT_BEFORE, metavar="REV")
    parser.add_argument("--truth", type=Path, default=TRUTH)
    parser.add_argument("--no-metadata", action="store_true", help="ignore the PDFs' /Info")
    args = parser.parse_args(argv)
    truth = {k: v for k, v in json.loads(args.truth.read_text("utf-8")).items() if is_truth_key(k)}
    with tempfile.TemporaryDirectory(prefix="rpa-quality-") as tmp:
        folder = Path(tmp)
        before = load_before(args.before, folder)
        rows = measure(args.extractor, before, truth, folder, not args.no_metadata)
    rev = _git("rev-parse", "--short", args.before).strip()
    info = ", no /Info metadata" if args.no_metadata else ""
    print(f"# Text guesses vs truth: {args.extractor}{info}, before = {rev}, after = the tree\n")
    if not CORPUS.is_dir():
        print(f"({CORPUS} is not here: the bundled samples only)\n")
    print(table(rows))
    print("\n## Totals\n")
    print(totals(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
