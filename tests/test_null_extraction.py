"""The benchmark-only null extraction (`rpa.extract.null`, for bench.conductor): the same result
shape as the real extraction, and selected only by BENCH_RPA_EXTRACTOR=null in the process that
extracts, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli, sample_pdfs, write_ids

from rpa.extract.null import ENV, NULL_LINE, extract_null
from rpa.extract.pdf import extract_pdf


def _shape(value: object) -> object:
    """A result's keys and value types, recursively (list items by their first one)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def test_the_null_result_has_the_real_results_shape_and_never_opens_the_pdf(
    tmp_path: Path,
) -> None:
    real = extract_pdf(str(sample_pdfs()[0]), str(tmp_path / "real.txt"))
    text = tmp_path / "deep" / "null.txt"
    null = extract_null(str(tmp_path / "no-such.pdf"), str(text), "pypdf", "run1")
    assert null["ok"] is True and null["pages"] == 1
    assert text.read_text() == f"[PAGE 1]\n{NULL_LINE}\n"
    real_outcome, null_outcome = real.pop("outcome"), null.pop("outcome")
    assert set(null) == set(real)
    assert isinstance(real_outcome, dict) and isinstance(null_outcome, dict)
    assert set(null_outcome) == set(real_outcome)
    for key in ("title", "abstract", "abstract_truncated", "page_count", "word_count"):
        assert _shape(null_outcome[key]) == _shape(real_outcome[key]), key
    assert _shape(null_outcome["references"])["count"] == "int"  # type: ignore[index]


def test_only_the_bench_variable_selects_it(cli: Cli, tmp_path: Path) -> None:
    assert ENV == "BENCH_RPA_EXTRACTOR"  # what bench.conductor sets
    ids = write_ids(tmp_path / "ids.txt", [f"ext:{p.stem}" for p in sample_pdfs()[:2]])
    done = cli.run("run", str(ids), *cli.knobs(extract_workers=1), BENCH_RPA_EXTRACTOR="null")
    assert done.returncode == 0, done.stdout + done.stderr
    texts = sorted(cli.out.rglob("text/**/*.txt"))
    assert len(texts) == 2
    assert all(NULL_LINE in t.read_text() for t in texts)
    records = [json.loads(p.read_text()) for p in cli.out.rglob("outcome/**/*.json")]
    assert [r["page_count"] for r in records] == [1, 1]

    again = Cli(tmp_path / "real", cli.template)
    again.workdir.mkdir()
    done = again.run("run", str(ids), *again.knobs(extract_workers=1), BENCH_RPA_EXTRACTOR="x")
    assert done.returncode == 0, done.stdout + done.stderr
    texts = sorted(again.out.rglob("text/**/*.txt"))
    assert len(texts) == 2
    assert not any(NULL_LINE in t.read_text() for t in texts)
