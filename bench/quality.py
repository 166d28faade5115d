"""pypdf vs pdfium on the real corpus: how far the two extractors' texts agree, and how.

    python -m bench.quality REPORT.json

Both run through rpa's own extraction interface (`rpa.extract.extract_pdf(pdf, txt,
extractor)`), in this process, one paper at a time. Per paper:

* words: tokens of the text (NFKC-normalised, so a ligature "ﬁ" and "fi" are the same word;
  lower case; runs of letters/digits), page markers removed;
* bag agreement: Dice over the word multisets, 2·|A∩B| / (|A|+|B|): the share of words both
  extractors produced, whatever their order;
* order agreement: difflib's ratio over the two word sequences: low when the reading order
  differs (columns interleaved, floats placed elsewhere), even when the words agree;
* what differs: the words each extractor has most often that the other lacks, and counts of
  known differences (line-end hyphenations, raw ligature characters, U+FFFD / control chars);
* key outcomes: whether rpa's analysis of the two texts finds the same title, abstract,
  headings count and references count;
* seconds of each extractor (single process), and their ratio.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import load_papers
from rpa.extract.pdf import extract_pdf

__all__ = ["compare_paper", "words"]

_WORD = re.compile(r"[^\W_]+")
_MARKER = re.compile(r"^\[PAGE \d+\]$", re.MULTILINE)
_HYPHEN_EOL = re.compile(r"[a-z]-\n[a-z]")
_JOIN_EOL = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
_LIGATURES = re.compile("[\ufb00-\ufb06]")
_ODD = re.compile("[\ufffd\ufffe\x00-\x08\x0b\x0c\x0e-\x1f]")


def words(text: str) -> list[str]:
    # A word hyphenated at a line end is one word ("per-\nsonal" -> "personal"): pdfium
    # joins these itself, pypdf keeps the hyphen and the break.
    joined = _JOIN_EOL.sub("", unicodedata.normalize("NFKC", text))
    return _WORD.findall(joined.lower())


def _run(pdf: Path, extractor: str, folder: Path) -> tuple[dict[str, Any], str, float]:
    txt = folder / f"{pdf.stem}.{extractor}.txt"
    start = time.perf_counter()
    result = extract_pdf(str(pdf), str(txt), extractor)
    seconds = time.perf_counter() - start
    text = txt.read_text(encoding="utf-8") if result.get("ok") else ""
    return result, _MARKER.sub("", text), seconds


def _top_only(mine: Counter[str], theirs: Counter[str], n: int = 4) -> list[str]:
    extra = mine - theirs
    return [f"{w}×{c}" for w, c in extra.most_common(n)]


def _same(a: Any, b: Any) -> bool:
    return bool(a == b)


def compare_paper(pdf: Path, folder: Path) -> dict[str, Any]:
    r1, t1, s1 = _run(pdf, "pypdf", folder)
    r2, t2, s2 = _run(pdf, "pdfium", folder)
    w1, w2 = words(t1), words(t2)
    c1, c2 = Counter(w1), Counter(w2)
    common = sum((c1 & c2).values())
    dice = 2 * common / (len(w1) + len(w2)) if (w1 or w2) else 1.0
    order = difflib.SequenceMatcher(None, w1, w2, autojunk=False).ratio() if w1 and w2 else 0.0
    o1: dict[str, Any] = r1.get("outcome") or {}
    o2: dict[str, Any] = r2.get("outcome") or {}
    return {
        "paper": pdf.stem,
        "ok": [bool(r1.get("ok")), bool(r2.get("ok"))],
        "pages": [r1.get("pages"), r2.get("pages")],
        "words": [len(w1), len(w2)],
        "bag": dice,
        "order": order,
        "only_pypdf": _top_only(c1, c2),
        "only_pdfium": _top_only(c2, c1),
        "hyphen_eol": [len(_HYPHEN_EOL.findall(t1)), len(_HYPHEN_EOL.findall(t2))],
        "ligatures": [len(_LIGATURES.findall(t1)), len(_LIGATURES.findall(t2))],
        "odd_chars": [len(_ODD.findall(t1)), len(_ODD.findall(t2))],
        "same_title": _same(o1.get("title"), o2.get("title")),
        "same_abstract": _same(bool(o1.get("abstract")), bool(o2.get("abstract"))),
        "headings": [len(o1.get("headings") or []), len(o2.get("headings") or [])],
        "references": [
            (o1.get("references") or {}).get("count"),
            (o2.get("references") or {}).get("count"),
        ],
        "seconds": [s1, s2],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality")
    parser.add_argument("report", type=Path)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="rpa-bench-quality-") as tmp:
        for paper in load_papers():
            rows.append(compare_paper(paper.path, Path(tmp)))
    total = [sum(r["seconds"][i] for r in rows) for i in (0, 1)]
    summary = {
        "papers": len(rows),
        "bag_median": statistics.median(r["bag"] for r in rows),
        "bag_min": min(r["bag"] for r in rows),
        "order_median": statistics.median(r["order"] for r in rows),
        "same_title": sum(r["same_title"] for r in rows),
        "same_references": sum(r["references"][0] == r["references"][1] for r in rows),
        "seconds": total,
        "speedup": total[0] / total[1] if total[1] else 0.0,
    }
    args.report.write_text(json.dumps({"rows": rows, "summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
