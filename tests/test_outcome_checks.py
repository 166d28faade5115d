"""What the written text and the record say beyond the guesses: ligatures folded in the text
file (issue 21), and a PDF whose arXiv stamp names another paper than its job's ID."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from conftest import Cli, write_ids

from rpa.extract.outcome.stamp import find_arxiv_stamp, stamp_mismatch
from rpa.extract.outcome.text import clean_characters
from rpa.extract.pdf import extract_pdf
from rpa.extract.record import outcome_record
from rpa.metrics import WindowStats
from rpa.queue.model import Job, Totals
from rpa.run.snapshot import RunSummary
from rpa.show.summary import make_summary, summary_dict
from rpa.testing.mirror import Mirror

ROOT = Path(__file__).resolve().parent.parent
#: a bundled sample (ACL Anthology, redistributable: rpa/samples/ATTRIBUTION.md) whose fonts
#: map ligatures to U+FB00-U+FB04: pypdf gives "ﬁ" for each of them
LIGATURES_PDF = ROOT / "rpa" / "samples" / "s2orc-n18-3011.pdf"
#: an arXiv copy with its stamp (arXiv:1512.03905v1), from the shared corpus: not redistributable
STAMPED_PDF = ROOT.parent / "shared" / "corpus" / "real" / "arxivfulltext__1512.03905.pdf"


def test_the_text_file_has_no_ligature_characters(tmp_path: Path) -> None:
    text = tmp_path / "paper.txt"
    result = extract_pdf(str(LIGATURES_PDF), str(text), "pypdf")
    assert result["ok"], result
    body = text.read_text(encoding="utf-8")
    assert not [c for c in body if "\ufb00" <= c <= "\ufb4f"]
    words = set(body.split())
    # words that pypdf gives as "deﬁned", "diﬀerent", "inﬂuence", "eﬃcacy" without the fold
    assert {"defined", "different", "influence"} <= words
    assert any(w.startswith("Efficacy") for w in words)


def test_only_presentation_forms_are_folded() -> None:
    assert (
        clean_characters("ﬁrst ﬂow oﬃce ﬀ ﬄ ﬅ Ĳssel ǅ") == "first flow office ff ffl st IJssel Dž"
    )
    assert clean_characters("\ufb2a\ufe8d") == unicodedata.normalize("NFKC", "\ufb2a\ufe8d")
    math = "x² + y₁ ≤ ½ 𝔤 ⊂ ℝ 𝑥 … ∞ ′ µ"  # NFKC would turn these into x2, g, R, x ...
    assert clean_characters(math) == math
    assert clean_characters("a\x1bb\x10c\x9fd\te\nf") == "a\ufffdb\ufffdc\ufffdd\te\nf"


@pytest.mark.parametrize(
    ("stamped", "job_id", "mismatch"),
    [
        ("arXiv:2301.00002v1 [cs.CL] 3 Jan 2023", "2301.00001", "2301.00002v1"),
        ("arXiv:2301.00001v3 [cs.CL] 3 Jan 2023", "2301.00001v2", None),  # another version
        ("arXiv:2301.00001v1 [cs.CL] 3 Jan 2023", "2301.00001", None),
        ("arXiv:math.AG/0101001v1 2 Jan 2001", "math/0101001", None),  # the subject class
        ("arXiv:hep-th/9108004v1 16 Aug 1991", "hep-th/9108005", "hep-th/9108004v1"),
        ("arXiv:hep-th/9108004v1 16 Aug 1991", "ext:some-paper", None),  # not an arXiv ID
        ("no stamp here", "2301.00001", None),
    ],
)
def test_stamp_mismatch(stamped: str, job_id: str, mismatch: str | None) -> None:
    assert stamp_mismatch(find_arxiv_stamp(stamped), job_id) == mismatch


def _job(job_id: str, outcome: dict[str, object]) -> Job:
    extract = {"outcome": outcome, "pages": 1, "chars": 1, "text_path": "t.txt"}
    return Job(job_id, 1, "extracted", attempts=0, crashes=0, extract=extract)


@pytest.mark.skipif(not STAMPED_PDF.exists(), reason="needs ../shared/corpus")
def test_the_record_flags_a_pdf_stamped_with_another_id(tmp_path: Path) -> None:
    result = extract_pdf(str(STAMPED_PDF), str(tmp_path / "p.txt"), "pdfium")
    outcome = result["outcome"]
    assert isinstance(outcome, dict)
    metadata = {"status": "found", "source": "arxiv-api", "title": "Another paper"}
    wrong = outcome_record(_job("2301.00001", outcome), "run", metadata)
    assert wrong["checks"] == {"stamp_mismatch": "1512.03905v1"}
    right = outcome_record(_job("1512.03905v1", outcome), "run", metadata)
    assert right["checks"] == {"stamp_mismatch": None}
    unstamped = outcome_record(_job("2301.00001", {"arxiv_stamp": None}), "run", None)
    assert unstamped["checks"] == {"stamp_mismatch": None}


@pytest.mark.skipif(not STAMPED_PDF.exists(), reason="needs ../shared/corpus")
def test_a_run_flags_and_counts_a_pdf_stamped_with_another_id(tmp_path: Path) -> None:
    """The real CLI over a mirror that serves arXiv:1512.03905's PDF for 2301.00001 too."""
    files = {"2301.00001": STAMPED_PDF, "1512.03905": STAMPED_PDF}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["2301.00001", "1512.03905"])
        result = cli.run("run", str(ids), *cli.knobs(metadata="off", extract_workers=1))
    assert result.returncode == 0, result.stdout + result.stderr
    records = {
        (r := json.loads(p.read_text("utf-8")))["id"]: r
        for p in (tmp_path / "out" / "outcome").rglob("*.json")
    }
    assert records["2301.00001"]["checks"] == {"stamp_mismatch": "1512.03905v1"}
    assert records["1512.03905"]["checks"] == {"stamp_mismatch": None}
    said = " ".join(result.stdout.split())
    assert "1 PDF carries another paper's arXiv stamp" in said
    assert "2301.00001 (stamp: 1512.03905v1)" in said


def test_the_summary_counts_stamp_mismatches() -> None:
    summary = RunSummary(
        run_id="r",
        status="finished",
        done=7,
        failed=0,
        totals=Totals(done=7),
        wall_seconds=1.0,
        lag=WindowStats(0, 0.0, 0.0, 0.0, 0.0),
        failures={},
        reasons={},
        slowest=[],
        stages=[],
        messages=[],
        stamp_mismatches=6,
        stamp_examples=[f"2301.0000{i} (stamp: 1512.03905v1)" for i in range(1, 6)],
    )
    text = " ".join(make_summary(summary).plain.split())
    assert "6 PDFs carry another paper's arXiv stamp" in text and ", ..." in text
    data = summary_dict(summary)
    assert data["stamp_mismatches"]["count"] == 6
    assert len(data["stamp_mismatches"]["examples"]) == 5
