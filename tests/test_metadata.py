"""arXiv's metadata joined to the records: real recorded API answers served from 127.0.0.1,
and a snapshot file; the checkpoint, the batches, the politeness, export's columns."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, sample_pdfs, write_ids

from rpa.sources.arxiv_api import parse_feed, query_url
from rpa.sources.metadata_file import iter_metadata_file
from rpa.testing.arxiv_api import ArxivApi
from rpa.testing.mirror import Mirror

RECORDED = Path(__file__).parent / "data" / "arxiv-api"
#: arXiv IDs with recorded answers (and one arXiv does not know)
IDS = ["1605.08386", "1707.08567", "2104.12255v1", "astro-ph/0601001", "quant-ph/0201082v1"]
UNKNOWN = "2301.99999"  # valid, and not among the recorded answers


def feed(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def test_the_recorded_answers_read_as_arxiv_means_them() -> None:
    one = parse_feed(feed("id_1605.08386.xml"))
    paper = one.found["1605.08386"]
    assert paper.status == "found" and paper.version == 1 and paper.source == "arxiv-api"
    assert paper.title and paper.abstract and paper.authors and paper.categories
    assert paper.published and paper.published.startswith("2016-")
    old = parse_feed(feed("id_astro-ph_0601001.xml")).found["astro-ph/0601001"]
    assert old.journal_ref == "ActaAstron.56:1-50,2006" and old.authors[0] == "Andrew Gould"
    assert old.categories[0] == "astro-ph" and old.abstract and "  " not in old.abstract
    versioned = parse_feed(feed("id_2104.12255v1.xml")).found
    assert list(versioned) == ["2104.12255"] and versioned["2104.12255"].categories[0] == "cs.CR"
    assert list(parse_feed(feed("id_quant-ph_0201082v1.xml")).found) == ["quant-ph/0201082"]
    partial = parse_feed(feed("id_0808.05394_1707.08567.xml"))
    assert list(partial.found) == ["1707.08567"]  # the unknown ID is simply absent
    assert len(partial.found["1707.08567"].authors) == 34
    assert parse_feed(feed("id_0000.0000.xml")).found == {}
    bad = parse_feed(feed("id_abc.xml"))
    assert bad.found == {} and bad.bad_ids == ["abc"]
    with pytest.raises(ValueError, match="not an Atom feed"):
        parse_feed(b"<html><body>busy")
    assert query_url("http://x/api/query", ["1605.08386", "astro-ph/0601001"]) == (
        "http://x/api/query?id_list=1605.08386,astro-ph/0601001&max_results=2&start=0"
    )


def snapshot_lines() -> list[dict[str, Any]]:
    """Lines in the shape of arXiv's Kaggle snapshot, with the recorded papers' metadata."""
    lines: list[dict[str, Any]] = []
    for name in ("id_1605.08386.xml", "id_astro-ph_0601001.xml"):
        paper = next(iter(parse_feed(feed(name)).found.values()))
        lines.append({
            "id": paper.id, "submitter": "x", "authors": ", ".join(paper.authors),
            "title": paper.title, "comments": paper.comment, "journal-ref": paper.journal_ref,
            "doi": paper.doi, "report-no": None, "categories": " ".join(paper.categories),
            "license": "http://creativecommons.org/licenses/by/4.0/",
            "abstract": paper.abstract,
            "versions": [{"version": "v1", "created": "Mon, 2 Jan 2006 14:57:58 GMT"}],
            "update_date": "2006-01-02",
            "authors_parsed": [[a.split()[-1], " ".join(a.split()[:-1]), ""]
                               for a in paper.authors],
        })  # fmt: skip
    return lines


def test_the_snapshot_is_streamed_and_only_wanted_lines_are_parsed(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json.gz"
    body = "\n".join(json.dumps(line) for line in snapshot_lines()) + "\n{broken\n"
    path.write_bytes(gzip.compress(body.encode()))
    wanted: list[str] = []

    def want(i: str) -> bool:
        wanted.append(i)
        return i == "astro-ph/0601001"

    [paper] = list(iter_metadata_file(path, want))
    assert wanted == ["1605.08386", "astro-ph/0601001"]  # the broken line has no id
    assert paper.source == "metadata-file" and paper.authors[0] == "Andrew Gould"
    assert paper.license and paper.published == "2006-01-02T14:57:58Z"


def served(tmp_path: Path) -> dict[str, Path]:
    pdfs = sample_pdfs()
    names = [*IDS, UNKNOWN]
    return {name: pdfs[i % len(pdfs)] for i, name in enumerate(names)} | {"demo": pdfs[0]}


def records(cli: Cli) -> dict[str, dict[str, object]]:
    out = cli.run("export", "--db", str(cli.db)).stdout
    return {r["id"]: r for r in map(json.loads, out.splitlines())}


@pytest.mark.timeout(120)
def test_records_carry_arxivs_metadata_fetched_in_polite_batches(tmp_path: Path) -> None:
    with Mirror(served(tmp_path)) as mirror, ArxivApi(RECORDED) as api:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [*IDS[:3], UNKNOWN, "ext:demo"])
        knobs = cli.knobs(progress=False, workers=8, metadata="arxiv-api", metadata_url=api.url,
                          metadata_batch=2, metadata_rate="1/0.5s")  # fmt: skip
        first = cli.run("run", str(ids), *knobs)
        assert first.returncode == 0, first.stdout + first.stderr
        asked = [i for _, batch in api.requests for i in batch]
        # each once, but the unknown one: asked again alone before it is stored as not_found
        # (a third time if it came first, before the API had answered any paper)
        known = [i for i in asked if i != UNKNOWN]
        assert sorted(known) == ["1605.08386", "1707.08567", "2104.12255"]
        assert 2 <= asked.count(UNKNOWN) <= 3 and api.requests[-1][1] == [UNKNOWN]
        assert all(len(batch) <= 2 for _, batch in api.requests)  # --metadata-batch
        times = [t for t, _ in api.requests]
        assert all(b - a >= 0.5 - 0.01 for a, b in itertools.pairwise(times))
        # more papers later: what the queue stored is never asked again
        more = write_ids(tmp_path / "more.txt", [*IDS, UNKNOWN])
        before = len(api.requests)
        assert cli.run("run", str(more), *knobs).returncode == 0
        later = [i for _, batch in api.requests[before:] for i in batch]
        assert sorted(later) == ["astro-ph/0601001", "quant-ph/0201082"]
    got = records(cli)
    one = got["1605.08386"]
    meta = one["metadata"]
    assert isinstance(meta, dict) and meta["status"] == "found" and meta["source"] == "arxiv-api"
    assert one["title"] == meta["title"] and one["authors"] == meta["authors"]
    assert one["sources"] == {"title": "arxiv-api", "authors": "arxiv-api",
                              "abstract": "arxiv-api", "headings": "text"}  # fmt: skip
    assert isinstance(one["from_text"], dict) and "title" in one["from_text"]
    old = got["astro-ph/0601001"]["metadata"]
    assert isinstance(old, dict) and old["journal_ref"] == "ActaAstron.56:1-50,2006"
    unknown = got[UNKNOWN]
    assert isinstance(unknown["metadata"], dict) and unknown["metadata"]["status"] == "not_found"
    assert unknown["sources"]["title"] in ("text", "none")  # type: ignore[index]
    assert got["ext:demo"]["metadata"] is None  # not an arXiv paper: nothing asked
    csv = cli.run("export", "--db", str(cli.db), "--format", "csv").stdout.splitlines()
    header = csv[0].split(",")
    assert "meta_primary_category" in header and "meta_journal_ref" in header
    parquet = tmp_path / "out.parquet"
    assert cli.run("export", "--db", str(cli.db), "--format", "parquet", "-o",
                   str(parquet)).returncode == 0  # fmt: skip
    import pyarrow.parquet as pq

    table = pq.read_table(parquet)
    assert table.num_rows == len(got) and table.column_names == header
    row = table.to_pylist()[sorted(got).index("astro-ph/0601001")]
    assert row["meta_journal_ref"] == "ActaAstron.56:1-50,2006"
    # typed and complete: lists are lists, every reference, where the text and PDF are
    import pyarrow as pa

    for column in ("authors", "headings", "references", "meta_categories"):
        assert table.schema.field(column).type == pa.list_(pa.string()), column
    record = got["astro-ph/0601001"]
    assert row["authors"] == record["authors"] and row["headings"] == record["headings"]
    references = record["references"]
    assert isinstance(references, dict) and row["references"] == references["items"]
    assert len(row["references"]) == references["count"]
    assert row["text_path"] == record["text_path"] and Path(row["text_path"]).exists()
    assert row["pdf_path"] == record["pdf"]["path"]  # type: ignore[index]
    joined = next(r for r in csv[1:] if r.startswith("astro-ph/0601001,"))
    assert " | ".join(record["authors"]) in joined  # type: ignore[arg-type]


def test_the_snapshot_file_joins_without_any_request(tmp_path: Path) -> None:
    snapshot = tmp_path / "arxiv-metadata-oai-snapshot.json"
    snapshot.write_text("".join(json.dumps(line) + "\n" for line in snapshot_lines()))
    with Mirror(served(tmp_path)) as mirror, ArxivApi(RECORDED) as api:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["1605.08386", "astro-ph/0601001", UNKNOWN])
        knobs = cli.knobs(progress=False, metadata_file=str(snapshot), metadata_url=api.url)
        result = cli.run("run", str(ids), *knobs)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "metadata: 2 of 3 papers found in" in result.stdout
        assert api.requests == []
    got = records(cli)
    meta = got["astro-ph/0601001"]["metadata"]
    assert isinstance(meta, dict) and meta["source"] == "metadata-file" and meta["license"]
    unknown = got[UNKNOWN]["metadata"]
    assert isinstance(unknown, dict) and unknown["status"] == "not_found"
    assert unknown["reason"] == "not in --metadata-file"


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(tmp_path: Path) -> None:
    """Titles and authors come from servers and files rpa does not control: in CSV a cell
    that starts a formula gets a ' (OWASP), unless --raw-csv; JSON lines stay as they are."""
    lines = snapshot_lines()
    lines[0]["title"] = '=HYPERLINK("http://evil.example/", "click")'
    lines[0]["abstract"] = "+cmd|' /C calc'!A0"
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with Mirror(served(tmp_path)) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["1605.08386", "astro-ph/0601001"])
        result = cli.run("run", str(ids), *cli.knobs(progress=False, metadata_file=str(snapshot)))
        assert result.returncode == 0, result.stdout + result.stderr
    import csv

    def rows(*flags: str) -> dict[str, dict[str, str]]:
        out = cli.run("export", "--db", str(cli.db), "--format", "csv", *flags)
        assert out.returncode == 0, out.stderr
        return {r["id"]: r for r in csv.DictReader(out.stdout.splitlines())}

    safe = rows()["1605.08386"]
    assert safe["title"] == '\'=HYPERLINK("http://evil.example/", "click")'
    assert safe["abstract"] == "'+cmd|' /C calc'!A0"
    assert not any(v.startswith(("=", "+", "-", "@")) for v in safe.values() if v)
    assert rows("--raw-csv")["1605.08386"]["title"].startswith("=HYPERLINK(")
    assert str(records(cli)["1605.08386"]["title"]).startswith("=HYPERLINK(")  # JSON as it is
    plain = rows()["astro-ph/0601001"]
    assert not plain["title"].startswith("'")  # an ordinary title is untouched
    # without --format, -o's extension names it: .csv is CSV, an unknown one JSON lines
    for name, first in (("out.csv", "id,"), ("out.CSV", "id,"), ("out.txt", "{")):
        done = cli.run("export", "--db", str(cli.db), "-o", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / name).read_text().startswith(first), name


def test_a_pdfs_own_title_that_starts_a_formula_is_neutralised_in_csv(tmp_path: Path) -> None:
    """No metadata at all: the title is the PDF's /Info /Title (page 1 prints it too), and a
    real paper whose /Title was set to start with `=` gets its ' in CSV like any other."""
    import csv

    from pypdf import PdfReader, PdfWriter

    paper = next(p for p in sample_pdfs() if p.name == "s2orc-2020.acl-main.207.pdf")
    writer = PdfWriter(clone_from=PdfReader(paper))
    hostile = "=SPECTER: Document-level Representation Learning using Citation-informed " \
              "Transformers"  # fmt: skip
    writer.add_metadata({"/Title": hostile})
    made = tmp_path / "formula-title.pdf"
    with made.open("wb") as fh:
        writer.write(fh)
    with Mirror({"formula": made}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:formula"])
        result = cli.run("run", str(ids), *cli.knobs(progress=False, metadata="off"))
        assert result.returncode == 0, result.stdout + result.stderr
    record = records(cli)["ext:formula"]
    sources = record["sources"]
    assert record["title"] == hostile  # from the PDF, as it is
    assert isinstance(sources, dict) and sources["title"] == "text"
    out = cli.run("export", "--db", str(cli.db), "--format", "csv")
    assert out.returncode == 0, out.stderr
    (row,) = csv.DictReader(out.stdout.splitlines())
    assert row["title"] == "'" + hostile
