"""User-defined stages (issue 22), with the real CLI in real processes, the bundled papers from
a real loopback mirror and the stage's API a real HTTP server on 127.0.0.1
(rpa.testing.stage_api) that answers slowly, with 429 + Retry-After, with 500s, and goes down.

The stages are the repository's examples (copied beside the run, imported from its working
folder as a user's module is) and a few written here (a blocking one, a failing one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from conftest import Cli, sample_pdfs, write_ids
from test_faults import interrupt, run_log, wait_until

from rpa.errors import ConfigError
from rpa.queue import open_store, runs
from rpa.queue.model import RunInfo
from rpa.stages import store
from rpa.stages.spec import parse_rate, resolve_stages
from rpa.testing.mirror import Mirror
from rpa.testing.stage_api import StageApi

EXAMPLES = Path(__file__).parent.parent / "examples"
IDS = [f"ext:{p.stem}" for p in sample_pdfs()]
KNOBS = {"workers": 6, "extract_workers": 2, "progress": False, "retry_base": 0.1,
         "retry_max": 1.0, "heartbeat_seconds": 0.5}  # fmt: skip
KP = ["--stage", "kp=examples.keyphrases:key_phrases", "--stage-kind", "kp=process"]
POST = ["--stage", "post=examples.post_record:post_record", "--stage-rate", "post=20/1s"]

MY_STAGES = """
import asyncio, time
import rpa

async def blocking(paper: rpa.Paper) -> dict:
    time.sleep(0.3)  # the mistake: a sync call in an async def
    return {"slept": 0.3}

def always_fails(paper: rpa.Paper) -> dict:
    raise ValueError("a bug in the stage")

async def not_json(paper: rpa.Paper) -> dict:
    return {"when": object()}

def sleepy(paper: rpa.Paper) -> dict:
    time.sleep(60)
    return {}

def dies(paper: rpa.Paper) -> dict:
    import os
    os._exit(3)

async def words(paper: rpa.Paper) -> dict:
    await asyncio.sleep(0)
    return {"n": len((paper.title or "").split()), "after": sorted(paper.results)}
"""


def _setup(tmp_path: Path, mirror: Mirror) -> tuple[Cli, Path]:
    shutil.copytree(EXAMPLES, tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "mystages.py").write_text(MY_STAGES)
    return Cli(tmp_path, mirror.url_template), write_ids(tmp_path / "ids.txt", IDS)


def _rows(cli: Cli, stage: str) -> dict[str, tuple[str, str, int, float]]:
    """job id -> (state, version, attempts, updated_at) of `stage` ({} before the queue is)."""
    try:
        rows = cli.query(
            "SELECT job_id, state, version, attempts, updated_at FROM stage_results "
            "WHERE stage = ?",
            stage,
        )
    except sqlite3.OperationalError:
        return {}
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stages_run_checkpoint_merge_export_and_rerun_on_a_new_version(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror, StageApi(delay=0.05) as api:
        cli, ids = _setup(tmp_path, mirror)
        first = cli.run("run", str(ids), *cli.knobs(**KNOBS), *KP, *POST, RECORD_API=api.url)
        assert first.returncode == 0, first.stderr + first.stdout
        kp, post = _rows(cli, "kp"), _rows(cli, "post")
        assert {s for s, *_ in kp.values()} == {"done"} and set(kp) == set(IDS)
        assert {s for s, *_ in post.values()} == {"done"} and set(post) == set(IDS)
        assert dict(api.received) == dict.fromkeys(IDS, 1)
        # each record on disk and in the queue carries both results under stages.<name>
        for (path,) in cli.query("SELECT outcome_path FROM jobs"):
            record = json.loads(Path(path).read_text())
            assert record["stages"]["post"]["received"] == 1
            assert record["stages"]["kp"]["phrases"] and record["stages"]["kp"]["words"] > 100
        csv = cli.run("export", "--db", str(cli.db), "--format", "csv")
        header = csv.stdout.splitlines()[0].split(",")
        assert {"stage_kp_phrases", "stage_kp_words", "stage_post_received"} <= set(header)
        import pyarrow.parquet as pq  # the parquet extra (./run.sh installs it)

        parquet = tmp_path / "out.parquet"
        cli.run("export", "--db", str(cli.db), "--format", "parquet", "-o", str(parquet))
        table = pq.read_table(parquet)
        assert table.column("stage_post_received").to_pylist() == ["1"] * len(IDS)
        # nothing left: the same stages again start no run
        again = cli.run("resume", *cli.knobs(**KNOBS), *KP, *POST, RECORD_API=api.url)
        assert "nothing left to do" in again.stdout, again.stdout + again.stderr
        # a new version of one stage re-runs that stage only, on every done paper
        v2 = cli.run("resume", *cli.knobs(**KNOBS), *KP, *POST, "--stage-version", "post=2",
                     "--reconfigure", RECORD_API=api.url)  # fmt: skip
        assert v2.returncode == 0, v2.stderr + v2.stdout
        assert dict(api.received) == dict.fromkeys(IDS, 2)
        assert {(s, v) for s, v, *_ in _rows(cli, "post").values()} == {("done", "2")}
        assert _rows(cli, "kp") == kp  # untouched
        # `rpa retry --stage` re-opens one stage; downloads and extractions stay
        jobs_before = cli.query("SELECT id, attempts, pdf_path, done_at FROM jobs ORDER BY id")
        fetched = sum(mirror.requests(p.stem) for p in sample_pdfs())
        reopened = cli.run("retry", "--db", str(cli.db), "--stage", "kp")
        assert reopened.returncode == 0 and "6 papers re-opened for stage kp" in reopened.stdout
        third = cli.run("resume", *cli.knobs(**KNOBS), *KP, *POST, "--stage-version", "post=2",
                        RECORD_API=api.url)  # fmt: skip
        assert third.returncode == 0, third.stderr + third.stdout
        assert all(r[3] > kp[i][3] for i, r in _rows(cli, "kp").items())  # kp ran again
        assert dict(api.received) == dict.fromkeys(IDS, 2)  # post did not
        assert cli.query("SELECT id, attempts, pdf_path, done_at FROM jobs ORDER BY id") == (
            jobs_before
        )
        assert sum(mirror.requests(p.stem) for p in sample_pdfs()) == fetched


def test_kill_9_then_resume_reruns_only_unfinished_stages(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror, StageApi(delay=1.5) as api:
        cli, ids = _setup(tmp_path, mirror)
        slow = [*POST, "--stage-concurrency", "post=1", "--stage", "words=mystages:words",
                "--stage-after", "words=post"]  # fmt: skip
        proc = cli.popen("run", str(ids), *cli.knobs(**KNOBS), *slow, RECORD_API=api.url)
        try:
            wait_until(
                lambda: sum(s == "done" for s, *_ in _rows(cli, "post").values()) >= 2,
                120, "two papers posted", proc,
            )  # fmt: skip
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        done_before = {i for i, (s, *_) in _rows(cli, "post").items() if s == "done"}
        assert 2 <= len(done_before) < len(IDS)
        resumed = cli.run("resume", *cli.knobs(**KNOBS), *slow, timeout=180, RECORD_API=api.url)
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        post, words = _rows(cli, "post"), _rows(cli, "words")
        assert {s for s, *_ in post.values()} == {"done"} == {s for s, *_ in words.values()}
        assert len(post) == len(IDS) == len(words)
        for job_id in done_before:  # a stage done before the kill is never asked again
            assert api.received[job_id] == 1
        # at most the one paper in flight at the kill was asked twice (at least once)
        assert sum(api.received.values()) <= len(IDS) + 1
        # the later stage saw the earlier one's result
        for (path,) in cli.query("SELECT outcome_path FROM jobs"):
            assert json.loads(Path(path).read_text())["stages"]["words"]["after"] == ["post"]


def test_an_outage_of_the_stage_service_pauses_it_and_charges_no_paper(tmp_path: Path) -> None:
    port = _free_port()
    api = StageApi(delay=0.2, port=port)  # down at first: its port refuses connections
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        knobs = cli.knobs(**{**KNOBS, "max_attempts": 2})
        proc = cli.popen("run", str(ids), *knobs, *POST, RECORD_API=api.url)
        try:
            wait_until(lambda: "stage post: its service is out" in run_log(cli), 120,
                       "the pause", proc)  # fmt: skip
            # it comes back, busy: two 429s with Retry-After, then two 500s, then answers
            api.answer_next(429, {"Retry-After": "1"}, times=2)
            api.answer_next(500, times=2)
            api.up()
            assert proc.wait(timeout=180) == 0, run_log(cli)
        finally:
            if proc.poll() is None:
                proc.kill()
            api.down()
        post = _rows(cli, "post")
        assert {s for s, *_ in post.values()} == {"done"} and len(post) == len(IDS)
        assert sum(a for _, _, a, _ in post.values()) == 0  # not one attempt charged
        assert sum(api.received.values()) == len(IDS)
        log = run_log(cli)
        assert "paused" in log and "no paper charged" in log
        # the summary's `retried` is the charged retries (none); the give-backs are said apart
        row = re.search(r"^  post +(\d+) +(\d+) +(\d+) ", log, re.MULTILINE)
        assert row is not None and row.groups() == (str(len(IDS)), "0", "0"), log
        assert re.search(r"[1-9][0-9]* post calls? given back \(service out, memory\)", log), log


def test_ctrl_c_gives_the_stage_calls_in_flight_back_uncounted(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror, StageApi(delay=30.0) as api:
        cli, ids = _setup(tmp_path, mirror)
        proc = cli.popen("run", str(ids), *cli.knobs(**{**KNOBS, "grace": 1}), *POST,
                         RECORD_API=api.url)  # fmt: skip
        try:
            wait_until(lambda: api.in_flight >= 4, 120, "four calls in flight", proc)
            assert interrupt(proc, signal.SIGINT) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
        post = _rows(cli, "post")
        assert len(post) == 4 and {(s, a) for s, _, a, _ in post.values()} == {("retry", 0)}
        assert cli.query("SELECT count(*) FROM stage_results WHERE lease_owner IS NOT NULL") == [
            (0,)
        ]


def test_a_blocking_async_stage_is_named_and_the_run_still_finishes(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        result = cli.run("run", str(ids), *cli.knobs(**KNOBS), "--stage", "nap=mystages:blocking")
        assert result.returncode == 0, result.stderr
        assert "stage nap blocked the event loop for" in result.stderr
        assert 'use kind = "thread"' in result.stderr
        assert {s for s, *_ in _rows(cli, "nap").values()} == {"done"}


def test_a_failing_stage_never_fails_the_paper_and_is_listed_per_kind(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        bad = ["--stage", "bad=mystages:always_fails", "--stage-kind", "bad=thread",
               "--stage", "odd=mystages:not_json"]  # fmt: skip
        result = cli.run("run", str(ids), *cli.knobs(**KNOBS), *bad)
        assert result.returncode == 0, result.stderr
        assert cli.count("stage = 'done'") == len(IDS)
        assert {(s, k) for s, k in cli.query("SELECT state, error_kind FROM stage_results")} == {
            ("failed", "internal")
        }
        said = " ".join(result.stdout.split())  # the summary wraps a reason (whole)
        assert "bad/internal" in said and "a bug in the stage" in said
        assert "odd/internal" in said and "serialisable" in said
        status = cli.status()
        assert status["user_stages"]["bad"]["failures"] == {"internal": len(IDS)}


def test_a_process_stage_past_its_timeout_is_killed_and_a_dead_one_charged(
    tmp_path: Path,
) -> None:
    papers = {p.stem: p for p in sample_pdfs()[:2]}
    with Mirror(papers) as mirror:
        cli, _ = _setup(tmp_path, mirror)
        ids = write_ids(tmp_path / "two.txt", [f"ext:{k}" for k in papers])
        stages = ["--stage", "nap=mystages:sleepy", "--stage-kind", "nap=process",
                  "--stage-timeout", "nap=1", "--stage-concurrency", "nap=1",
                  "--stage", "die=mystages:dies", "--stage-kind", "die=process",
                  "--stage-concurrency", "die=1"]  # fmt: skip
        started = time.monotonic()
        result = cli.run("run", str(ids), *cli.knobs(**{**KNOBS, "max_attempts": 2}), *stages)
        assert result.returncode == 0, result.stderr + result.stdout
        assert time.monotonic() - started < 50  # the 60 s sleeps were cut at 1 s each
        assert cli.count("stage = 'done'") == len(papers)
        got = {(st, s, k, a) for st, s, k, a in cli.query(
            "SELECT stage, state, error_kind, attempts FROM stage_results")}  # fmt: skip
        assert got == {("nap", "failed", "timeout", 2), ("die", "failed", "worker_crashed", 2)}


def test_a_wrong_call_is_refused_before_anything_runs(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        result = cli.run("run", str(ids), *cli.knobs(**KNOBS), "--stage", "x=mystages:nothing")
        assert result.returncode != 0 and "cannot load mystages:nothing" in result.stderr
        sync_as_async = cli.run("run", str(ids), *cli.knobs(**KNOBS), "--stage",
                                "x=mystages:always_fails")  # fmt: skip
        assert "is not an async def" in sync_as_async.stderr
        assert not (tmp_path / "rpa.db").exists() or cli.count("1 = 1") == 0


def test_two_runs_never_hold_the_same_stage_of_one_paper(tmp_path: Path) -> None:
    """The claim's fence, on a real queue: what a live run holds, another cannot claim."""
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        assert cli.run("run", str(ids), *cli.knobs(**KNOBS)).returncode == 0
    s = open_store(str(cli.db), create=False)
    try:
        for run_id in ("run-a", "run-b"):
            runs.register_run(
                s, RunInfo(id=run_id, command="run", started_at=runs.clock(s),
                           heartbeat_seconds=60.0, settings_json="{}"),
            )  # fmt: skip
        a = store.claim(s, "post", "1", [], "run-a", 0, 100, time.time())
        b = store.claim(s, "post", "1", [], "run-b", 0, 100, time.time())
        assert len(a) == len(IDS) and b == []
        assert store.complete(s, a[0].job_id, "post", "run-b", a[0].token, {}, 0.1, 0.0) is None
        assert store.reopen(s, "post", None, time.time()) == {"running": len(IDS)}
        again = store.claim(s, "post", "1", [], "run-b", 0, 100, time.time())
        assert len(again) == len(IDS)  # re-opened: the lease token moved on
        assert store.complete(s, a[0].job_id, "post", "run-a", a[0].token, {}, 0.1, 0.0) is None
    finally:
        s.close()


def test_stage_settings_from_file_env_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "rpa.toml"
    config.write_text(
        'workers = 3\n[[stage]]\nname = "summary"\ncall = "m:f"\nconcurrency = 16\n'
        'rate = "50/1m"\nversion = "2"\n[[stage]]\nname = "later"\ncall = "m:g"\n'
        'kind = "thread"\nafter = ["summary"]\n'
    )
    env = {"RPA_STAGE_CONCURRENCY": "summary=8;later=2", "RPA_STAGE_TIMEOUT": "later=5"}
    flags = {"concurrency": ["summary=4"], "call": ["third=m:h"], "kind": ["third=process"]}
    specs = {s.name: s for s in resolve_stages(config, env, flags)}
    assert specs["summary"].concurrency == 4 and specs["summary"].rate_limit == (50, 60.0)
    assert specs["summary"].version == "2"
    assert specs["later"].concurrency == 2 and specs["later"].timeout == 5.0
    assert specs["later"].needs == ("summary",) and specs["third"].kind == "process"
    order = [s.name for s in resolve_stages(config, env, flags)]
    assert order.index("summary") < order.index("later")
    assert parse_rate("100/s") == (100, 1.0) and parse_rate("10/2h") == (10, 7200.0)
    for bad in ({"after": ["summary=later"]}, {"call": ["download=m:f"]}, {"kind": ["x=gpu"]}):
        try:
            resolve_stages(config, {}, bad)
        except ConfigError:
            continue
        raise AssertionError(f"{bad} was accepted")
    # the config file's [[stage]] tables are no unknown knob for the rest of rpa
    result = subprocess.run(
        [sys.executable, "-m", "rpa", "status", "--db", str(tmp_path / "none.db")],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ}, timeout=60,
    )  # fmt: skip
    assert "unknown key" not in result.stderr
    assert sqlite3.sqlite_version_info >= (3, 35)  # the claim's RETURNING


def test_the_example_config_stage_is_true_to_the_code(tmp_path: Path) -> None:
    text = (Path(__file__).parent.parent / "config.example.toml").read_text()
    block = text[text.index("# [[stage]]\n") :]
    config = tmp_path / "rpa.toml"
    config.write_text("\n".join(line[2:].strip() for line in block.splitlines()))
    (spec,) = resolve_stages(config, {}, {})
    assert (spec.name, spec.kind, spec.concurrency, spec.after) == (
        "keyphrases", "process", 2, ("outcome",)
    )  # fmt: skip


def test_stages_on_a_postgresql_queue(tmp_path: Path, postgres_db: Callable[[], str]) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        shutil.copytree(EXAMPLES, tmp_path / "examples")
        (tmp_path / "mystages.py").write_text(MY_STAGES)
        cli = Cli(tmp_path, mirror.url_template, db=postgres_db())
        ids = write_ids(tmp_path / "ids.txt", IDS)
        after = ["--stage", "words=mystages:words", "--stage-after", "words=kp"]
        result = cli.run("run", str(ids), *cli.knobs(**KNOBS), *KP, *after)
        assert result.returncode == 0, result.stderr + result.stdout
        rows = cli.query("SELECT stage, state, count(*) FROM stage_results GROUP BY stage, state")
        assert sorted(rows) == [("kp", "done", len(IDS)), ("words", "done", len(IDS))]
        status = cli.status()
        assert status["user_stages"]["words"]["done"] == len(IDS)
        # each stage call's attempt, with when it started (a bool was written there, which
        # PostgreSQL refused at every heartbeat: every stage attempt was lost)
        started = cli.query("SELECT started_at FROM attempts WHERE stage IN ('kp', 'words')")
        assert len(started) == 2 * len(IDS) and all(t > 1e9 for (t,) in started), started
