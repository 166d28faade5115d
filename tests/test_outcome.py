"""Key-outcome analysis: hand-written text cases, the bundled samples, and the real corpus.

The corpus checks are thresholds over classes of papers (one- and two-column, many
publishers), not per-file tuning; each run prints a table of what was found.
"""

from __future__ import annotations

import csv
import multiprocessing
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rpa.extract.outcome import MAX_HEADINGS, analyze, find_arxiv_stamp
from rpa.extract.pdf import extract_pdf

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "rpa" / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"

# ------------------------------------------------------------------ hand-written cases


@pytest.mark.parametrize(
    "text",
    [
        "arXiv:2301.00001v2  [cs.CL]  3 Jan 2023",
        "Some Title\n3202 naJ 3  ]LC.sc[  2v10000.1032:viXra\nAuthor",  # reversed
        "a r X i v : 2 3 0 1 . 0 0 0 0 1 v 2  [ c s . C L ]  3  J a n  2 0 2 3",  # spaced
        "\n".join("arXiv:2301.00001v2[cs.CL]3Jan2023"),  # one glyph per line
    ],
)
def test_stamp_found_however_pypdf_lays_it_out(text: str) -> None:
    assert find_arxiv_stamp(text) == {
        "id": "2301.00001",
        "version": 2,
        "raw": "arXiv:2301.00001v2 [cs.CL] 3 Jan 2023",
    }


def test_old_style_stamp_and_no_false_positives() -> None:
    old = find_arxiv_stamp("arXiv:hep-th/9108004v1  16 Aug 1991\nGROUND RING")
    assert old == {
        "id": "hep-th/9108004",
        "version": 1,
        "raw": "arXiv:hep-th/9108004v1 16 Aug 1991",
    }
    squashed = find_arxiv_stamp("a\nr\nX\ni\nv\n:\nh\ne\np\n-\nt\nh\n/\n9108004v116Aug1991")
    assert squashed is not None and (squashed["id"], squashed["version"]) == ("hep-th/9108004", 1)
    two_digit = find_arxiv_stamp("arXiv:1905.00506v12 [math.NT] 20 May 2019")
    assert two_digit is not None and two_digit["version"] == 12
    assert find_arxiv_stamp("as shown in arXiv:2301.00001 [cs.CL], we") is None  # a citation
    assert find_arxiv_stamp("") is None


PAPER = """\
Proceedings of the 1st Workshop on Things, pages 1-9
July 5, 2020. ©2020 Association for Things
Robust Parsing of Things:
A Study in Two Parts
Ada Lovelace1, Alan Turing2 and Grace Hopper1
1University of Somewhere 2Institute of Elsewhere
Abstract
We study things. Our re-
sults show that things work.
1 Introduction
Things matter [1].
2 Related Work
Others studied things.
2.1 Older Work
Long ago.
3 Method
We did it.
1. This numbered list item is a sentence and not a heading at all because it runs on
Conclusion
Done.
Acknowledgments
Thanks.
References
[1] A. Lovelace. 1843. Notes on the engine. Taylor.
[2] A. Turing. 1936. On computable numbers. Proc. LMS.
[3] G. Hopper. 1952. The education of a computer. ACM.
"""


def test_analyze_a_hand_written_paper() -> None:
    out = analyze([PAPER], {"/Title": "untitled.dvi"})
    assert out["title"] == "Robust Parsing of Things: A Study in Two Parts"
    assert out["abstract"] == "We study things. Our results show that things work."
    assert out["headings"] == [
        "1 Introduction",
        "2 Related Work",
        "2.1 Older Work",
        "3 Method",
        "Conclusion",
        "Acknowledgments",
        "References",
    ]
    refs = out["references"]
    assert isinstance(refs, dict) and refs["count"] == 3
    assert refs["first"][0] == "A. Lovelace. 1843. Notes on the engine. Taylor."
    assert out["page_count"] == 1 and out["word_count"] == len(PAPER.split())
    assert out["arxiv_stamp"] is None


def test_metadata_title_used_only_when_page_one_agrees() -> None:
    agreed = analyze([PAPER], {"/Title": "Robust Parsing of Things"})
    assert agreed["title"] == "Robust Parsing of Things"
    stale = analyze([PAPER * 3], {"/Title": "Quarterly Budget Report for Marketing"})
    assert stale["title"] == "Robust Parsing of Things: A Study in Two Parts"


def test_author_year_references_and_appendix_stop() -> None:
    text = (
        "1 Introduction\nText.\nReferences\n"
        "Ammar, W., and Peters, M. 2017. The ai2 system at semeval.\n"
        "In ACL workshop (SemEval).\n"
        "Jane Smith and John Doe. 2019. A study of things that\n"
        "wrap over lines. In Proceedings of Things.\n"
        "Afgan E, Baker D, Lipman DJ. 1997.\n"
        "Gapped BLAST: a new generation of tools. Nucleic Acids Research.\n"
        "A Appendix\nMore text that is not a reference.\n"
    )
    refs = analyze([text], {})["references"]
    assert isinstance(refs, dict) and refs["count"] == 3
    assert refs["first"][2].startswith("Afgan E, Baker D, Lipman DJ. 1997. Gapped BLAST")


def test_headings_are_deduplicated_and_capped() -> None:
    lines = ["Introduction", "Introduction"]
    lines += [
        f"{n} Topic {'ABCDEFGHIJ'[n % 10]}{'abcdefghijklmno'[n // 10]}" for n in range(1, 150)
    ]
    out = analyze(["\n".join(lines)], {})
    headings = out["headings"]
    assert isinstance(headings, list) and len(headings) == MAX_HEADINGS
    assert headings[:3] == ["Introduction", "1 Topic Ba", "2 Topic Ca"]


@pytest.mark.parametrize(
    "pages",
    [
        [],
        [""],
        ["\x00\ufffd\ud800"],
        ["[1]\n[2]\n[3]"],
        ["1.\n" * 5000],
        ["Abstract"],
        ["x" * 10**6],
    ],
)
def test_analyze_never_raises_on_odd_text(pages: list[str]) -> None:
    out = analyze(pages, {"/Title": "\x00"})
    assert set(out) == {
        "title",
        "abstract",
        "headings",
        "page_count",
        "word_count",
        "references",
        "arxiv_stamp",
    }


# -------------------------------------------------------------------- real papers


def extract_all(pdfs: list[Path], folder: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Extract in 2 processes (as rpa does); name -> (result, page-1 text as pypdf gave it)."""
    texts = [folder / f"{pdf.stem}.txt" for pdf in pdfs]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        results = list(ex.map(extract_pdf, map(str, pdfs), map(str, texts)))
    out = {}
    for pdf, txt, result in zip(pdfs, texts, results, strict=True):
        body = txt.read_text(encoding="utf-8") if result["ok"] else ""
        page1 = body.split("[PAGE 2]\n")[0].removeprefix("[PAGE 1]\n")
        out[pdf.name] = (result, page1)
    return out


SAMPLE_TITLES = {
    "cermine-bmc-example2.pdf": "Understanding the barriers to setting up a healthcare quality",
    "cermine-hindawi-test2.pdf": "Patient Experiences of Structured Heart Failure Programmes",
    "s2orc-2020.acl-main.207.pdf": "SPECTER: Document-level Representation Learning using "
    "Citation-informed Transformers",
    "s2orc-n18-3011.pdf": "Construction of the Literature Graph in Semantic Scholar",
    "texlive-elsarticle-elstest-5p.pdf": "This is a specimen ab title",
    "texlive-revtex-apssamp.pdf": "Manuscript Title: with Forced Linebreak",
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[dict[str, Any], str]]:
    return extract_all(sorted(SAMPLES.glob("*.pdf")), tmp_path_factory.mktemp("samples"))


def test_bundled_samples(samples: dict[str, tuple[dict[str, Any], str]]) -> None:
    assert set(samples) == set(SAMPLE_TITLES)
    for name, (result, _) in samples.items():
        outcome = result["outcome"]
        assert outcome["title"].startswith(SAMPLE_TITLES[name]), name
        assert outcome["references"]["count"] > 0, name
        assert outcome["arxiv_stamp"] is None, name  # none of them is an arXiv copy
        assert outcome["page_count"] == result["pages"]
    acl = samples["s2orc-2020.acl-main.207.pdf"][0]["outcome"]
    assert acl["abstract"].startswith("Representation learning is a critical ingredient")
    assert acl["headings"][:3] == ["1 Introduction", "2 Model", "2.1 Overview"]
    assert acl["headings"][-1] == "References"
    first = acl["references"]["first"][0]
    assert first.startswith("Anant K. Agarwal, Ivan Zaitsev, Xuanhui Wang, Cheng Yen Li")


def manifest() -> list[dict[str, str]]:
    with (CORPUS / "manifest.tsv").open(newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f, delimiter="\t") if row["kind"] == "real"]


@pytest.fixture(scope="module")
def corpus_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[dict[str, Any], str]]]:
    if not (CORPUS / "manifest.tsv").is_file():
        pytest.skip("../shared/corpus is not here")
    pdfs = [CORPUS / "real" / row["filename"] for row in manifest()]
    yield extract_all(pdfs, tmp_path_factory.mktemp("corpus"))


# Ground truth (read off the first pages), to measure the heuristics, not to drive them.
CORPUS_TITLES = {
    "arxivfulltext__1512.03905.pdf": "Compositeness of Near Threshold Quasi-Bound States",
    "arxivfulltext__1905.00506.pdf": "AN EQUIVARIANT ISOMORPHISM THEOREM FOR MOD p REDUCTIONS",
    "arxivfulltext__cs_9912018.pdf": "Computation in an algebra of test selection criteria",
    "arxivfulltext__hep-th_9108004.pdf": "GROUND RING OF TWO DIMENSIONAL STRING THEORY",
    "arxivfulltext__hep-th_9109009.pdf": "Bi-Hamiltonian Structure of Super KP Hierarchy",
    "cermine__bmc-example2.pdf": "Understanding the barriers to setting up a healthcare",
    "cermine__hindawi-test2.pdf": "Patient Experiences of Structured Heart Failure Programmes",
    "cermine__peerj-test6.pdf": "VESPA: Very large-scale Evolutionary and Selective Pressure",
    "grobid__0807.3577-JCAP.pdf": "Apparent and average accelerations of the Universe",
    "grobid__test_Grobid_2_05982691.pdf": "Energy Efficient Routing Protocol for Zone",
    "papermage__2020.acl-main.447.pdf": "S2ORC: The Semantic Scholar Open Research Corpus",
    "papermage__2023.eacl-main.121.pdf": "LONGEVAL: Guidelines for Human Evaluation of Faith",
    "papermage__2201.13352v1.pdf": "Low-Power Silicon Strain Sensor Based on CMOS Current",
    "papermage__2202.00535v1.pdf": "Novelty Controlled Paraphrase Generation with Retrieval "
    "Augmented Conditional Prompt Tuning",
    "papermage__2203.00130v1.pdf": "Paper Plain: Making Medical Research Papers Approachable "
    "to Healthcare Consumers",
    "papermage__2302.07302v1.pdf": "CiteSee: Augmenting Citations in Scientific Papers with "
    "Persistent",
    "papermage__2304.02623v1.pdf": "Beyond Summarization: Designing AI Support for Real-World",
    "papermage__papermage.pdf": "PaperMage: A Unified Toolkit for Processing, Representing, "
    "and Manipulating",
    "pdfjs__tracemonkey.pdf": "Trace-based Just-in-Time Type Specialization for Dynamic Languages",
    "s2orc__2020.acl-main.207.pdf": "SPECTER: Document-level Representation Learning",
    "s2orc__N18-3011.pdf": "Construction of the Literature Graph in Semantic Scholar",
    "scienceparse__P07-1088.pdf": "Sparse Information Extraction: Unsupervised Language Models",
    "scienceparse__P14-1059.pdf": "How to make words with vectors: Phrase generation",
    "scienceparse__dyer12.pdf": "Joint Feature Selection in Distributed Stochastic Learning "
    "for Large-Scale",
    "scienceparse__ieee-tcsvt-2a774230.pdf": "Disk-Based Storage for Scalable Video",
    "scienceparse__pedersen04-trustrank.pdf": "Combating Web Spam with TrustRank",
    "scienceparse__plos-like-e4faf2c1.pdf": "Comparative physiological and metabolomics "
    "analysis of wheat",
    "texlive__aastex-sample631.pdf": "Template AASTEXArticle with Examples",
    "texlive__acmart-sample-sigconf.pdf": "The Name of the Title Is Hope",
    "texlive__elsarticle-elstest-5p.pdf": "This is a specimen ab title",
    "texlive__revtex-apssamp.pdf": "Manuscript Title: with Forced Linebreak",
    "unstructured__layout-parser-2103.15348-excerpt.pdf": "LayoutParser: A Unified Toolkit for "
    "Deep Learning Based Document Image Analysis",
}


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


@pytest.mark.corpus
def test_real_corpus_outcomes(
    corpus_results: dict[str, tuple[dict[str, Any], str]], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = manifest()
    table = [f"{'file':44} {'title':40} {'abs':>4} {'head':>4} {'refs':>4}  stamp"]
    good_titles = with_abstract = with_outline = 0
    stamps_expected = stamps_found = 0
    for row in rows:
        name = row["filename"]
        result, page1 = corpus_results[name]
        assert result["ok"] is True, (name, result)
        out = result["outcome"]
        title, refs, stamp = out["title"], out["references"], out["arxiv_stamp"]
        assert title, name  # never empty on a real paper
        good_titles += _norm(title).startswith(_norm(CORPUS_TITLES[name]))
        with_abstract += len(out["abstract"]) >= 200
        with_outline += len(out["headings"]) >= 3
        if row["has_references"] == "True":
            assert refs["count"] > 0, name
        m = re.fullmatch(r"(\S+?)v(\d+)", row["arxiv_id"])
        if m and f"arXiv:{m[1]}v{m[2]}" in re.sub(r"\s+", "", page1):
            # pypdf's page-1 text has the stamp: it must be found, right.
            stamps_expected += 1
            assert stamp is not None, name
            assert (stamp["id"], stamp["version"]) == (m[1], int(m[2])), name
            stamps_found += 1
        elif not row["arxiv_id"]:
            assert stamp is None, name  # no false positives from cited arXiv IDs
        shown = stamp["raw"] if stamp else "-"
        table.append(
            f"{name[:44]:44} {title[:40]:40} {len(out['abstract']):4} "
            f"{len(out['headings']):4} {refs['count']:4}  {shown}"
        )
    n = len(rows)
    with capsys.disabled():
        print(
            f"\nreal corpus ({n} papers): titles right {good_titles}/{n}, "
            f"abstract {with_abstract}/{n}, >=3 headings {with_outline}/{n}, "
            f"stamps {stamps_found}/{stamps_expected}"
        )
        print("\n".join(table))
    assert stamps_expected >= 10  # the arXiv copies whose pypdf text carries the stamp
    assert good_titles >= 0.9 * n
    assert with_abstract >= 0.8 * n
    assert with_outline >= 0.85 * n
