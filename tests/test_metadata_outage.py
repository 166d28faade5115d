"""An outage of arXiv's metadata API is the API's condition, never the papers' (issue 18).

The real recorded API (rpa.testing.arxiv_api) on 127.0.0.1 is stopped mid-run (its port
closed: connections refused, as when arXiv's API is down) and started again on the same port:
the papers waiting for their metadata wait, uncounted, while the stage probes the API; the
wait is said on screen and in `rpa status`; the others go on; when the API answers, every paper
ends done once with its true metadata. An API away past --metadata-wait stops the run as
`interrupted` (exit 130) without a paper charged or done without its metadata, and `rpa
resume` finishes. The state of the API's outage (rpa.run.api_outage) is read with a clock the
test moves: its backoff, its bound and its fail-fast are times, not events."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, sample_pdfs, wait_for, write_ids

from rpa.notices import Notices
from rpa.run.api_outage import ApiOutage
from rpa.sources.arxiv_api import parse_feed
from rpa.testing.arxiv_api import ArxivApi
from rpa.testing.mirror import Mirror

RECORDED = Path(__file__).parent / "data" / "arxiv-api"
IDS = ["1605.08386", "1707.08567", "2104.12255v1", "astro-ph/0601001", "quant-ph/0201082v1"]
BASES = ["1605.08386", "1707.08567", "2104.12255", "astro-ph/0601001", "quant-ph/0201082"]
UNKNOWN = "2301.99999"  # valid, and not among the recorded answers: arXiv does not know it
TRUTH = {b: p.title for name in RECORDED.glob("id_*.xml")
         for b, p in parse_feed(name.read_bytes()).found.items()}  # fmt: skip


def served() -> dict[str, Path]:
    pdfs = sample_pdfs()
    names = [*IDS, UNKNOWN]
    return {name: pdfs[i % len(pdfs)] for i, name in enumerate(names)} | {"demo": pdfs[0]}


def records(cli: Cli) -> dict[str, dict[str, Any]]:
    out = cli.run("export", "--db", str(cli.db)).stdout
    return {r["id"]: r for r in map(json.loads, out.splitlines())}


def assert_true_metadata(cli: Cli) -> None:
    """Every arXiv paper done once with arXiv's own metadata; nothing failed or charged."""
    got = records(cli)
    for paper_id, base in zip(IDS, BASES, strict=True):
        meta = got[paper_id]["metadata"]
        assert meta["status"] == "found" and meta["title"] == TRUTH[base], (paper_id, meta)
    assert cli.count("stage = 'failed'") == 0
    assert cli.query("SELECT count(*), max(attempts) FROM jobs WHERE attempts > 0")[0][0] == 0


def api_waits(cli: Cli) -> list[str]:
    """The runs' stored waits that name the API (`rpa status --json`)."""
    return [r["waiting"] for r in cli.status()["runs"] if "arXiv's API" in (r["waiting"] or "")]


@pytest.mark.timeout(120)
def test_an_api_outage_pauses_the_papers_that_wait_for_it_and_costs_none(tmp_path: Path) -> None:
    with Mirror(served()) as mirror, ArxivApi(RECORDED) as api:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [*IDS, UNKNOWN, "ext:demo"])
        knobs = cli.knobs(progress=False, workers=8, metadata="arxiv-api", metadata_url=api.url,
                          metadata_batch=1, metadata_rate="1/0.5s")  # fmt: skip
        proc = cli.popen("run", str(ids), *knobs)
        log = tmp_path / "run.log"
        try:
            wait_for(lambda: api.requests, 60, "the API's first request")
            api.stop()  # one batch of one ID asked: at least five papers wait for the API
            down_at = time.monotonic()
            wait_for(lambda: "arXiv's API" in log.read_text() and
                     "does not answer" in log.read_text(), 30, "the wait said")  # fmt: skip
            wait_for(lambda: api_waits(cli), 30, "the wait in `rpa status --json`")
            [waiting] = api_waits(cli)
            assert f"127.0.0.1:{api.port}" in waiting, waiting
            assert "to answer again" in waiting and "papers wait for their metadata" in waiting
            # a paper that needs no metadata is done (it waits for no API); nobody is charged
            wait_for(lambda: cli.count("id = 'ext:demo' AND stage = 'done'"), 30, "ext:demo done")
            assert cli.count("stage = 'failed'") == 0 and proc.poll() is None
            asked = len(api.requests)
            time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))  # the outage's length itself
            api.start()
            assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        after = [i for _, batch in api.requests[asked:] for i in batch]
    said = log.read_text()
    assert "Traceback" not in said and "arXiv's API answers again after" in said, said
    live = [line for line in said.splitlines() if line.startswith("rpa: ")]
    assert sum("does not answer" in line for line in live) == 1, said  # once, not each probe
    assert_true_metadata(cli)
    assert cli.count("stage = 'done'") == len(IDS) + 2
    got = records(cli)
    assert got[UNKNOWN]["metadata"]["status"] == "not_found"  # arXiv's "no such paper" kept
    assert got["ext:demo"]["metadata"] is None
    stored = dict(cli.query("SELECT id, status FROM metadata"))
    assert stored == {**dict.fromkeys(BASES, "found"), UNKNOWN: "not_found"}
    # after the outage each paper is asked once (the unknown one alone again before not_found)
    assert all(after.count(b) <= 1 for b in BASES) and after.count(UNKNOWN) <= 2, after
    assert cli.status()["runs"][0]["waiting"] is None


@pytest.mark.timeout(120)
def test_an_api_away_past_metadata_wait_stops_the_run_and_resume_finishes(tmp_path: Path) -> None:
    with Mirror(served()) as mirror, ArxivApi(RECORDED) as api:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", IDS)
        knobs = cli.knobs(progress=False, workers=8, metadata="arxiv-api", metadata_url=api.url,
                          metadata_batch=1, metadata_rate="1/0.5s", metadata_wait=3,
                          log_format="json")  # fmt: skip
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_for(lambda: api.requests, 60, "the API's first request")
            api.stop()
            assert proc.wait(timeout=60) == 130, (tmp_path / "run.log").read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        said = (tmp_path / "run.log").read_text()
        lines = [json.loads(line) for line in said.splitlines() if line.startswith("{")]
        text = json.dumps(lines)
        assert "Traceback" not in said and "does not answer" in text, said
        assert "gave no answer for" in text and "--metadata-wait 3 s" in text, said
        assert cli.status()["runs"][0]["status"] == "interrupted"
        assert cli.count("stage = 'failed'") == 0
        done = records(cli)
        assert len(done) < len(IDS)  # some waited for the API when the run stopped
        assert all(r["metadata"]["status"] == "found" for r in done.values()), done
        api.start()
        resumed = cli.run("resume", *cli.knobs(progress=False))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in resumed.stdout + resumed.stderr
    assert cli.count("stage = 'done'") == len(IDS)
    assert_true_metadata(cli)


def test_the_api_outage_backs_off_is_bounded_and_a_wrong_url_fails_fast() -> None:
    now = [0.0]
    notices = Notices()
    outage = ApiOutage("127.0.0.1:9", notices, 1800.0, fail_fast=False, clock=lambda: now[0])
    outage.answered()  # it answered once: an outage now is waited for
    for _ in range(2):  # a failure or two: asked again at once, nothing said
        outage.failed("ConnectError: refused", None, waiting=4)
        assert outage.hold() == 0.0 and outage.waiting(4) is None
    outage.failed("ConnectError: refused", None, waiting=4)  # the third in a row: down, said
    assert notices.recent(5) == [
        "arXiv's API (127.0.0.1:9) does not answer (ConnectError: refused): 4 papers wait for "
        "their metadata, none is charged; probing it until it answers (at most --metadata-wait "
        "1800 s)"
    ]
    waits = []
    for _ in range(12):  # each probe that fails doubles the wait, up to five minutes
        waits.append(outage.hold())
        now[0] += waits[-1]
        outage.failed("ConnectError: refused", None, waiting=4)
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and max(waits) == 300.0, waits
    assert outage.gone is None and "4 papers wait" in str(outage.waiting(4))
    assert outage.waiting(0) is None  # nobody waits for it: the run does not
    outage.answered()
    assert outage.hold() == 0.0 and outage.waiting(4) is None
    assert notices.recent(1)[0].startswith("arXiv's API answers again after")
    # asked to wait (429 with Retry-After): waited for as asked, said, not a down API
    outage.failed("HTTP 429 from the API", 7.0, waiting=2)
    assert outage.hold() == 7.0 and "asked us to wait until" in str(outage.waiting(2))
    # the bound: --metadata-wait without an answer (the wall clock: the wait's start)
    short = ApiOutage("127.0.0.1:9", Notices(), 0.0, fail_fast=False, clock=lambda: now[0])
    short.failed("HTTP 503 from the API", None, waiting=1)
    assert short.check() is not None and "--metadata-wait 0 s" in str(short.check())
    # a URL that never answered in this run: not there (a mistyped port), but arXiv's own
    typo = ApiOutage("127.0.0.1:9", Notices(), 1800.0, fail_fast=True, clock=lambda: now[0])
    arxiv = ApiOutage("export.arxiv.org", Notices(), 1800.0, fail_fast=False,
                      clock=lambda: now[0])  # fmt: skip
    for _ in range(6):
        for o in (typo, arxiv):
            now[0] += o.hold()
            o.failed("ConnectError: refused", None, waiting=1)
    assert "never answered in this run" in str(typo.gone) and "--metadata-url" in str(typo.gone)
    assert arxiv.gone is None


def test_the_api_found_down_is_not_said_while_the_pdf_host_may_stop_the_run() -> None:
    """While the PDF host never answered and is down (the run stops `unreachable` if its first
    probes fail too), a wait of --metadata-wait for the API would be said in vain: it is said
    at the API's next failed probe once the PDF host answered, and never if the API answers."""
    now, pdf_host_away = [0.0], [True]
    notices = Notices()
    outage = ApiOutage("127.0.0.1:9", notices, 1800.0, fail_fast=False,
                       quiet=lambda: pdf_host_away[0], clock=lambda: now[0])  # fmt: skip
    for _ in range(4):  # down (the third), then a probe: nothing said
        now[0] += outage.hold()
        outage.failed("ConnectError: refused", None, waiting=3)
    assert notices.recent(5) == [] and "probed again" in str(outage.waiting(3))
    pdf_host_away[0] = False  # the PDF host answered: the run goes on, and waits for the API
    now[0] += outage.hold()
    outage.failed("ConnectError: refused", None, waiting=3)
    assert notices.recent(5) == [
        "arXiv's API (127.0.0.1:9) does not answer (ConnectError: refused): 3 papers wait for "
        "their metadata, none is charged; probing it until it answers (at most --metadata-wait "
        "1800 s)"
    ]
    # found down and answering before it was said: neither its outage nor its end is said
    unsaid = Notices()
    back = ApiOutage("127.0.0.1:9", unsaid, 1800.0, fail_fast=False, quiet=lambda: True)
    for _ in range(3):
        back.failed("ConnectError: refused", None, waiting=1)
    back.answered()
    assert unsaid.recent(5) == []


async def test_what_is_no_answer_from_the_api_and_what_is_one() -> None:
    """The real fake API's 503 (no Retry-After), its 429 (Retry-After) and its closed port are
    no answer (the API's condition); its feed is one, whatever it says."""
    import httpx

    from rpa.run.api_answer import NoAnswer, read_answer
    from rpa.sources.arxiv_api import query_url

    ids = ["1605.08386"]
    with ArxivApi(RECORDED) as api, ThreadPoolExecutor(1) as io:
        api.retry_after = 2.0
        api.fail_next("unavailable", "busy", "empty")
        async with httpx.AsyncClient() as client:
            url = query_url(api.url, ids)
            got = [await read_answer(client, url, ids, io=io, deadline=10, retry=15)
                   for _ in range(4)]  # fmt: skip
            api.stop()
            refused = await read_answer(client, url, ids, io=io, deadline=10, retry=15)
    assert got[0] == NoAnswer("HTTP 503 from the API")
    assert got[1] == NoAnswer("HTTP 429 from the API", 2.0)
    empty, full = got[2], got[3]  # an empty page and the true feed: answers, both
    assert isinstance(empty, tuple) and empty[0] == 200 and not empty[1].found
    assert isinstance(full, tuple) and list(full[1].found) == ids
    assert isinstance(refused, NoAnswer) and refused.retry_after is None
    assert refused.why.startswith("ConnectError"), refused
