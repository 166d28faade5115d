"""Key-outcome analysis: hand-written text cases, the bundled samples, and the real corpus.

The corpus checks are thresholds over classes of papers (one- and two-column, many
publishers), not per-file tuning; each run prints a table of what was found. The truth they
are measured against (tests/data/truth.json) was read once off each paper's first pages;
bench/quality_text.py prints the same measures before and after a change.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rpa.extract.outcome import MAX_ABSTRACT_CHARS, MAX_HEADINGS, analyze, find_arxiv_stamp
from rpa.extract.outcome.score import Score, is_truth_key, score
from rpa.extract.pdf import extract_pdf

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "rpa" / "samples"
CORPUS = ROOT.parent / "shared" / "corpus"
TRUTH = {
    k: v
    for k, v in json.loads((ROOT / "tests" / "data" / "truth.json").read_text("utf-8")).items()
    if is_truth_key(k)
}

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
    assert out["authors"] == ["Ada Lovelace", "Alan Turing", "Grace Hopper"]
    assert out["abstract"] == "We study things. Our results show that things work."
    assert out["abstract_truncated"] is False
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
        ["Text.\nReferences\n[5] A. Doe. 2019.\n[7] B. Roe. 2020."],  # no entry numbered 1-3
        ["References\n1. x\nAppendix A\n", "A. Doe, B. Roe, C. Poe\n" * 20],
        ["1.\n" * 5000],
        ["Abstract"],
        ["x" * 10**6],
    ],
)
def test_analyze_never_raises_on_odd_text(pages: list[str]) -> None:
    out = analyze(pages, {"/Title": "\x00"})
    assert set(out) == {
        "title",
        "authors",
        "abstract",
        "abstract_truncated",
        "headings",
        "page_count",
        "word_count",
        "references",
        "arxiv_stamp",
    }


def test_authors_split_at_marks_commas_and_and() -> None:
    """Names end at affiliation/footnote marks as well as at commas and "and"; the marks go."""
    cases = {
        "Kyle Lo†∗ Lucy Lu Wang†∗ Daniel S. Weld†‡": ["Kyle Lo", "Lucy Lu Wang", "Daniel S. Weld"],
        "Andrew E. Webb1, Thomas A. Walsh1 and Mary J. O’Connell1,2": [
            "Andrew E. Webb",
            "Thomas A. Walsh",
            "Mary J. O’Connell",
        ],
        "Kyle Loα∗ Zejiang Shenα,τ ∗ Regan Huffα": ["Kyle Lo", "Zejiang Shen", "Regan Huff"],
        "ANDREA FERRAGUTI AND GIACOMO MICHELI": ["ANDREA FERRAGUTI", "GIACOMO MICHELI"],
        "Ed Chang and Avideh Zakhor, Member, IEEE": ["Ed Chang", "Avideh Zakhor"],
        "Yuki Kamiya1,a) and Tetsuo Hyodo1": ["Yuki Kamiya", "Tetsuo Hyodo"],
        "Jos Migchielsen1,∗": ["Jos Migchielsen"],
    }
    for line, names in cases.items():
        text = f"A Study of Things in Space\n{line}\nSome University, Town\nAbstract\nWe study.\n"
        assert analyze([text], {})["authors"] == names, line


def test_authors_from_the_acm_reference_format_and_accents() -> None:
    grid = (
        "The Name of the Title Is Hope\nBen Trovato\nG.K.M. Tobin\ntrovato@corp.com\n"
        "Institute for Clarity in Documentation\nAbstract\nA clear document.\n"
        "ACM Reference Format:\nBen Trovato, G.K.M. Tobin, and Lars Th\u00f8rv\u00e4ld. 2018. The\n"
        "Name of the Title Is Hope. In Proceedings.\n"
    )
    assert analyze([grid], {})["authors"] == ["Ben Trovato", "G.K.M. Tobin", "Lars Thørväld"]
    # pypdf's TeX accents ("Zolt´an"), an affiliation letter glued to every name ("Roisina"
    # over "aInstitute"), and no names at all: an empty guess rather than a wrong one
    accents = "On Spam\nZolt´an Gy¨ongyi, Nicolas Andr´e\nStanford University\nAbstract\nX.\n"
    assert analyze([accents], {})["authors"] == ["Zoltán Gyöngyi", "Nicolas André"]
    glued = "On Strain\nNicolas Roisina, Denis Flandrea\naInstitute of Things, Louvain\n"
    assert analyze([glued + "Abstract\nX.\n"], {})["authors"] == ["Nicolas Roisin", "Denis Flandre"]
    nobody = "On Strain in Silicon\nDepartment of Physics, Some University\nAbstract\nX.\n"
    assert analyze([nobody], {})["authors"] == []


SENTENCE = "This sentence of the abstract runs on for a while to fill the lines up well. "


def test_abstract_without_a_heading() -> None:
    revtex = (
        "Manuscript Title\nAnn Author and Second Author\nAuthors’ institution and/or address\n"
        "(Dated: August 10, 2010)\n" + SENTENCE * 4 + "\nPACS numbers: 03.65.Ud\n"
        "I. INTRODUCTION:\nTHE LINE BREAK WAS FORCED\nBody text.\n"
    )
    out = analyze([revtex], {})
    assert out["authors"] == ["Ann Author", "Second Author"]
    assert out["abstract"] == (SENTENCE * 4).strip()
    assert out["headings"] == ["I. INTRODUCTION: THE LINE BREAK WAS FORCED"]
    structured = (
        "Research Article\nPatient Experiences of Programmes\nNuala E. Tully and Karen Morgan\n"
        "Copyright © 2010 Nuala E. Tully et al. This is an open access article distributed\n"
        "under the Creative Commons Attribution License, which permits unrestricted use.\n"
        "Objectives. Patient experiences were examined. Methods. Focus groups were held.\n"
        "Results. Participants were satisfied. Conclusion. Programmes work.\n1. Introduction\n"
    )
    abstract = str(analyze([structured], {})["abstract"])
    assert abstract.startswith("Objectives. Patient experiences") and abstract.endswith("work.")
    # a paper that goes straight to its first section has no abstract to guess
    plain = "A Study of Things\nJohn Smith\n1 Introduction\n" + SENTENCE * 5
    assert analyze([plain], {})["abstract"] == ""


def test_abstract_loses_footnote_marks_and_is_capped_at_a_sentence_end() -> None:
    marked = "Abstract\nWe introduce S2ORC,1 a corpus∗ of papers. We release it for research.1\n"
    assert analyze([marked + "1 Introduction\n"], {})["abstract"] == (
        "We introduce S2ORC, a corpus of papers. We release it for research."
    )
    long = "Abstract\n" + "\n".join([SENTENCE] * 100) + "\n1 Introduction\nText.\n"
    out = analyze([long], {})
    abstract = out["abstract"]
    assert isinstance(abstract, str) and out["abstract_truncated"] is True
    assert MAX_ABSTRACT_CHARS - len(SENTENCE) <= len(abstract) <= MAX_ABSTRACT_CHARS
    assert abstract.endswith("well.") and SENTENCE.strip() in abstract


def test_revtex_outline_and_line_numbers() -> None:
    """Roman sections, lettered subsections, arabic third level (REVTeX, IEEE); a draft's
    margin line numbers glued to the lines are not part of the headings."""
    body = "Text of the section that goes on, as the text of sections does.\n"
    revtex = "".join(
        f"{h}\n{body}"
        for h in (
            "I. INTRODUCTION",
            "A. Second-level heading: Formatting",
            "1. Wide text (A level-3 head)",
            "B. Citations",
            "II. MATH AND EQUATIONS",
            "III. FLOATS: FIGURES, TABLES, VIDEOS,\nETC.",
        )
    )
    assert analyze(["Abstract\nWe study.\n" + revtex], {})["headings"] == [
        "I. INTRODUCTION",
        "A. Second-level heading: Formatting",
        "1. Wide text (A level-3 head)",
        "B. Citations",
        "II. MATH AND EQUATIONS",
        "III. FLOATS: FIGURES, TABLES, VIDEOS, ETC.",
    ]
    lines = ["1. INTRODUCTION"] + [body.strip()] * 8 + ["2. STYLES"] + [body.strip()] * 8
    numbered = "\n".join(f"{line}{n}" for n, line in enumerate(lines, start=26))
    assert analyze([numbered], {})["headings"] == ["1. INTRODUCTION", "2. STYLES"]


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


def test_bundled_samples_text_guesses(samples: dict[str, tuple[dict[str, Any], str]]) -> None:
    """Authors, the two abstracts without an "Abstract" heading, REVTeX's outline, no footnote
    mark ending an abstract, and an abstract over the old 2,000-character cut kept whole."""
    outcomes = {name.removesuffix(".pdf"): r["outcome"] for name, (r, _) in samples.items()}
    for name, outcome in outcomes.items():
        truth = TRUTH[name]
        assert outcome["authors"][:1] == truth["authors"][:1], name
        assert outcome["authors"] == truth["authors"], name
        assert not re.search(r"[\d∗*†‡§¶⋆]$", outcome["abstract"]), name
    hindawi = outcomes["cermine-hindawi-test2"]["abstract"]
    assert hindawi.startswith("Objectives. Patient experiences of structured heart failure")
    assert hindawi.endswith("confidence in disease self-management.")
    aps = outcomes["texlive-revtex-apssamp"]
    assert aps["abstract"].startswith("An article usually includes an abstract, a concise")
    assert aps["abstract"].endswith("to give the category of each item.")
    headings = aps["headings"]
    assert headings[:2] == [
        "I. FIRST-LEVEL HEADING: THE LINE BREAK WAS FORCED via \\\\",
        "A. Second-level heading: Formatting",
    ]
    top = [h for h in headings if re.match(r"[IVX]+\. ", h)]
    assert top[1:] == [
        "II. MATH AND EQUATIONS",
        "III. CROSS-REFERENCING",
        "IV. FLOATS: FIGURES, TABLES, VIDEOS, ETC.",
    ]
    specter = outcomes["s2orc-2020.acl-main.207"]["abstract"]
    assert specter.endswith("outperforms a variety of competitive baselines on the benchmark.")
    bmc = outcomes["cermine-bmc-example2"]
    assert len(bmc["abstract"]) > 2_000 and bmc["abstract_truncated"] is False
    assert bmc["abstract"].endswith("contributions from clients, staff and management.")
    scores = [score(outcome, TRUTH[name]) for name, outcome in outcomes.items()]
    assert all(s.title and s.abstract_start and s.abstract_end for s in scores)
    assert sum(s.headings_found for s in scores) == sum(s.headings_true for s in scores)


# What tests/data/truth.json says pypdf's text of ../shared/corpus/real gives (32 papers),
# measured with bench/quality_text.py: a change that loses any of it fails here.
CORPUS_FLOORS = {
    "title": 32,
    "first_author": 32,
    "all_authors": 32,
    "abstract_found": 32,
    "abstract_start": 32,
    "abstract_end": 32,
    "headings_found": 274,  # of 277
}


@pytest.mark.corpus
def test_real_corpus_against_the_truth(
    corpus: Path,
    corpus_results: dict[str, tuple[dict[str, Any], str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    scores: dict[str, Score] = {}
    for name, (result, _) in corpus_results.items():
        assert result["ok"] is True, name
        scores[name] = score(result["outcome"], TRUTH[name.removesuffix(".pdf")])
    totals = {
        field: sum(bool(getattr(s, field)) for s in scores.values())
        for field in CORPUS_FLOORS
        if field != "headings_found"
    }
    totals["headings_found"] = sum(s.headings_found for s in scores.values())
    with capsys.disabled():
        print(f"\nreal corpus vs truth ({len(scores)} papers): {totals}")
        for name, s in scores.items():
            misses = [f for f in CORPUS_FLOORS if f != "headings_found" and not getattr(s, f)]
            if misses or s.headings_found < s.headings_true:
                print(f"  {name}: {misses} headings {s.headings_found}/{s.headings_true}")
    assert len(scores) == 32 and corpus.is_dir()
    for field, floor in CORPUS_FLOORS.items():
        assert totals[field] >= floor, (field, totals[field], floor)
