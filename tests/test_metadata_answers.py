"""Metadata answers that are wrong are never stored for good, and an answer is read streaming.

What a genuine "no such paper" looks like comes from arXiv's real recorded answers
(tests/data/arxiv-api): the ID is simply left out of a well-formed feed whose totalResults
counts what came. An empty page for several IDs, an answer about other IDs, one that counts
more than it holds, or a page that is not XML answers nothing: those IDs are asked again
(smaller batches, alone, with a backoff) and end with their true metadata, or `unavailable`
(never stored) when the API never answers them."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import tracemalloc
from pathlib import Path

import pytest
from conftest import Cli, sample_pdfs, write_ids

from rpa.queue import open_store
from rpa.sources.arxiv_api import FeedReader, judge, parse_feed
from rpa.testing.arxiv_api import ArxivApi
from rpa.testing.mirror import Mirror

RECORDED = Path(__file__).parent / "data" / "arxiv-api"
IDS = ["1605.08386", "1707.08567", "2104.12255v1", "astro-ph/0601001", "quant-ph/0201082v1"]
BASES = ["1605.08386", "1707.08567", "2104.12255", "astro-ph/0601001", "quant-ph/0201082"]
UNKNOWN = "2301.99999"  # valid, and not among the recorded answers


def feed(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def test_what_an_answer_means_for_each_id_asked() -> None:
    # arXiv's real partial answer: the unknown ID is left out of a believable feed
    partial = judge(["0808.05394", "1707.08567"], parse_feed(feed("id_0808.05394_1707.08567.xml")))
    assert list(partial.found) == ["1707.08567"] and partial.absent == ["0808.05394"]
    assert partial.refused == []
    # arXiv's real empty answer to one ID: a sign of no such paper (asked again before stored)
    empty = parse_feed(feed("id_0000.0000.xml"))
    assert judge(["0000.0000"], empty).absent == ["0000.0000"]
    # the same empty page for several IDs answers nothing
    many = judge(["1605.08386", "1707.08567"], empty)
    assert many.absent == [] and many.refused == ["1605.08386", "1707.08567"]
    assert many.why == "answered an empty page for 2 IDs"
    # an answer about another paper answers nothing for the one asked
    other = judge(["1605.08386"], parse_feed(feed("id_1707.08567.xml"), ["1605.08386"]))
    assert other.found == {} and other.absent == [] and other.refused == ["1605.08386"]
    assert "other IDs" in other.why and "1707.08567" in other.why
    with ArxivApi(RECORDED) as api:  # its wrong answers, without a request
        asked = ["1605.08386", "astro-ph/0601001"]
        api.fail_next("mixed", "short")
        mixed = judge(asked, parse_feed(api.answer(asked)[1], asked))
        short = judge(asked, parse_feed(api.answer(asked)[1], asked))
    assert list(mixed.found) == ["1605.08386"] and mixed.refused == ["astro-ph/0601001"]
    assert list(short.found) == ["1605.08386"] and short.refused == ["astro-ph/0601001"]
    assert "counts 2" in short.why
    # versions and old-style IDs match the IDs asked (without versions, subject class or not)
    assert list(judge(["2104.12255"], parse_feed(feed("id_2104.12255v1.xml"), ["2104.12255"]))
                .found) == ["2104.12255"]  # fmt: skip
    old = feed("id_quant-ph_0201082v1.xml")
    assert list(parse_feed(old, ["quant-ph/0201082"]).found) == ["quant-ph/0201082"]
    classed = feed("id_astro-ph_0601001.xml").replace(b"astro-ph/0601001", b"math/0101001")
    got = parse_feed(classed, ["math.AG/0101001"]).found
    assert list(got) == ["math.AG/0101001"] and got["math.AG/0101001"].authors[0] == "Andrew Gould"
    assert parse_feed(old, ["quant-ph/0201083"]).foreign == ["quant-ph/0201082"]


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;'
        b'&a;&a;&a;&a;&a;&a;&a;">]><feed xmlns="http://www.w3.org/2005/Atom">&b;</feed>',
        b'<!DOCTYPE feed SYSTEM "file:///etc/passwd"><feed xmlns="http://www.w3.org/2005/Atom"/>',
        b'<feed xmlns="http://www.w3.org/2005/Atom">&undeclared;</feed>',
        b"<html><body>Service busy",
        b'<feed xmlns="http://www.w3.org/2005/Atom"><entry>',
    ],
)
def test_no_dtd_no_entity_no_broken_feed_is_read(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"DTD|not XML|not an Atom"):
        parse_feed(body)


def test_a_feed_near_the_size_cap_is_read_in_one_entrys_memory() -> None:
    """~15 MiB of entries (the stage reads at most 16 MiB), fed in the stage's chunks: the
    parse's peak memory is a small fraction of the feed, and only the asked IDs are kept."""
    text = feed("id_1707.08567.xml").decode()
    start, end = text.index("<entry>"), text.index("</entry>") + len("</entry>")
    one = text[start:end]
    head, tail = text[:start], "</feed>\n"
    n = 15 * 2**20 // len(one.encode())
    body = (head + "".join(one.replace("1707.08567", f"2301.{i:05d}") for i in range(n))
            + tail).encode()  # fmt: skip
    wanted = ["2301.00007", f"2301.{n // 2:05d}", f"2301.{n - 1:05d}"]
    chunk = 256 * 1024
    tracemalloc.start()
    try:
        reader = FeedReader(wanted)
        for at in range(0, len(body), chunk):
            reader.feed(body[at : at + chunk])
        got = reader.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(body) > 14 * 2**20 and got.entries == n
    assert sorted(got.found) == sorted(wanted) and got.foreign_count == n - 3
    assert got.found[wanted[1]].authors[-1] == "Hirosuke Yamamoto"
    assert peak < 2 * 2**20, f"peak {peak:,} bytes for a {len(body):,}-byte feed"


def records(cli: Cli) -> dict[str, dict[str, object]]:
    out = cli.run("export", "--db", str(cli.db)).stdout
    return {r["id"]: r for r in map(json.loads, out.splitlines())}


def served() -> dict[str, Path]:
    pdfs = sample_pdfs()
    return {name: pdfs[i % len(pdfs)] for i, name in enumerate([*IDS, UNKNOWN])}


@pytest.mark.timeout(120)
def test_wrong_answers_are_asked_again_and_end_with_the_true_metadata(tmp_path: Path) -> None:
    truth = {b: p.title for name in RECORDED.glob("id_*.xml")
             for b, p in parse_feed(name.read_bytes()).found.items()}  # fmt: skip
    with Mirror(served()) as mirror, ArxivApi(RECORDED) as api:
        api.fail_next("slow", "empty", "others", "mixed", "short", "malformed")
        api.fault_limit = 2  # fewer wrong answers for one ID than the stage's tries
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [*IDS, UNKNOWN])
        knobs = cli.knobs(progress=False, workers=8, metadata="arxiv-api", metadata_url=api.url,
                          metadata_batch=3, metadata_rate="1/0.2s")  # fmt: skip
        result = cli.run("run", str(ids), *knobs)
        requests = [batch for _, batch in api.requests]
        faulted = dict(api.faulted)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert list(faulted.values())[:3] == ["slow", "empty", "others"], (requests, faulted)
    assert "Traceback" not in said and "asking again in" in said, said
    # while the slow answer came, the other papers reached their outcome: a full batch
    assert len(requests[1]) >= 2 and faulted[1] == "empty", requests
    assert f"arXiv's API answered an empty page for {len(requests[1])} IDs; asking again in" in said
    for index, fault in faulted.items():  # what a wrong answer left out is asked again later
        known = [b for b in requests[index] if b in BASES]
        kept = {"slow": known, "mixed": known[:1], "short": known[:1]}.get(fault, [])
        for i in requests[index]:
            assert i in kept or any(i in later for later in requests[index + 1 :]), (i, requests)
    got = records(cli)
    for paper_id, base in zip(IDS, BASES, strict=True):
        meta = got[paper_id]["metadata"]
        assert isinstance(meta, dict) and meta["status"] == "found", (paper_id, meta)
        assert meta["id"] == base and meta["title"] == truth[base]
    unknown = got[UNKNOWN]["metadata"]
    assert isinstance(unknown, dict) and unknown["status"] == "not_found"
    assert sum(UNKNOWN in batch for batch in requests) >= 2  # asked alone before it is stored
    stored = dict(cli.query("SELECT id, status FROM metadata"))
    assert stored == {**dict.fromkeys(BASES, "found"), UNKNOWN: "not_found"}


@pytest.mark.timeout(120)
def test_an_api_that_only_answers_empty_pages_leaves_metadata_unavailable(
    tmp_path: Path,
) -> None:
    """Nothing is stored, so a later run asks again; no paper is called not_found."""
    with Mirror(served()) as mirror, ArxivApi(RECORDED) as api:
        api.fail_next(*["empty"] * 100)
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [IDS[0], IDS[3], UNKNOWN])
        knobs = cli.knobs(progress=False, metadata="arxiv-api", metadata_url=api.url,
                          metadata_rate="1/0.2s")  # fmt: skip
        result = cli.run("run", str(ids), *knobs)
        asked = len(api.requests)
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert cli.count("stage = 'done'") == 3
    assert "metadata unavailable for" in said and "a later run asks again" in said, said
    metas = [r["metadata"] for r in records(cli).values()]
    assert all(isinstance(m, dict) and m["status"] == "unavailable" for m in metas), metas
    assert all("empty page" in m["reason"] or "left out" in m["reason"] for m in metas)  # type: ignore[index]
    assert cli.query("SELECT id FROM metadata") == []
    assert 3 <= asked <= 3 * 4, asked  # a bounded number of tries


@pytest.mark.timeout(120)
def test_a_failure_inside_the_metadata_stage_fails_its_batch_not_the_run(tmp_path: Path) -> None:
    """The stage's error boundary (rpa.run.metadata: MetadataService.run). No answer of the
    API was found that breaks the parse in an unforeseen way (every broken answer is a
    ValueError, asked again), so the failure is injected in a real part: the queue's SQLite
    file gets a trigger that refuses to store one paper's metadata (a real IntegrityError
    from a real database, as a constraint or a damaged file would raise, and no condition to
    wait for). That batch's metadata fail, said once, and its papers' records say why; the
    stage goes on with the next batches; every paper is done, exit 0, no traceback."""
    refused = BASES[1]
    with Mirror(served()) as mirror, ArxivApi(RECORDED) as api:
        cli = Cli(tmp_path, mirror.url_template)
        open_store(cli.db).close()
        with contextlib.closing(sqlite3.connect(cli.db)) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON metadata "
                f"WHEN NEW.id = '{refused}' BEGIN SELECT RAISE(ABORT, 'refused here'); END"
            )
            conn.commit()
        ids = write_ids(tmp_path / "ids.txt", [*IDS, UNKNOWN])
        knobs = cli.knobs(progress=False, workers=8, metadata="arxiv-api", metadata_url=api.url,
                          metadata_batch=2, metadata_rate="1/0.2s")  # fmt: skip
        result = cli.run("run", str(ids), *knobs)
        batches = [batch for _, batch in api.requests]
    said = result.stdout + result.stderr
    assert result.returncode == 0, said
    assert "Traceback" not in said, said
    assert cli.count("stage = 'done'") == len(IDS) + 1
    failed = next(batch for batch in batches if refused in batch)
    told = f"rpa: the metadata stage failed for {len(failed)} papers (IntegrityError: refused here)"
    assert result.stderr.count("the metadata stage failed") == 1, said  # said once (live)
    assert told in result.stderr, said
    got = records(cli)
    for paper_id, base in zip(IDS, BASES, strict=True):
        meta = got[paper_id]["metadata"]
        assert isinstance(meta, dict), (paper_id, meta)
        if base in failed:
            assert meta["status"] == "error" and "refused here" in meta["reason"], meta
        else:  # the batches before and after it: the stage went on
            assert meta["status"] == "found", (paper_id, meta)
    later = batches[batches.index(failed) + 1 :]
    assert later, batches  # a batch was asked after the failure
    stored = dict(cli.query("SELECT id, status FROM metadata"))
    assert refused not in stored and all(b in stored for b in BASES if b not in failed)
