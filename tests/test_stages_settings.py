"""The queue keeps its stages (rpa.stages.remember), with the real CLI in real processes:
a bare `rpa resume` runs them, a change of what a stage is needs --reconfigure, a change of
how it runs is kept, and --drop-stage takes one out."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import sample_pdfs, wait_for
from test_faults import interrupt, wait_until
from test_stages import IDS, KNOBS, POST, _rows, _setup

from rpa.errors import ConfigError
from rpa.stages.remember import StageRequest, plan
from rpa.testing.mirror import Mirror
from rpa.testing.stage_api import StageApi

WORDS = ["--stage", "words=mystages:words"]


def test_a_bare_resume_after_an_interrupted_run_runs_the_queues_stages(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror, StageApi(delay=1.0) as api:
        cli, ids = _setup(tmp_path, mirror)
        slow = [*POST, "--stage-concurrency", "post=1", *WORDS, "--stage-after", "words=post"]
        proc = cli.popen("run", str(ids), *cli.knobs(**{**KNOBS, "grace": 0.1}), *slow,
                         RECORD_API=api.url)  # fmt: skip
        try:
            wait_until(
                lambda: sum(s == "done" for s, *_ in _rows(cli, "post").values()) >= 2,
                120, "two papers posted", proc,
            )  # fmt: skip
            assert interrupt(proc, signal.SIGINT) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
        assert len([s for s, *_ in _rows(cli, "post").values() if s == "done"]) < len(IDS)
        # the call the Ctrl-C cut still sleeps at the service (it does not see the client go):
        # the resume's concurrency is measured from when it is over
        wait_for(lambda: api.in_flight == 0, 30, "the cut call over at the service")
        api.most_in_flight = 0
        # no stage named: the queue's (post at 20/1s, one at a time, then words after it)
        resumed = cli.run("resume", *cli.knobs(**KNOBS), timeout=180, RECORD_API=api.url)
        assert resumed.returncode == 0, resumed.stderr + resumed.stdout
        assert "the queue's stages: post, words" in resumed.stderr
        post, words = _rows(cli, "post"), _rows(cli, "words")
        assert {s for s, *_ in post.values()} == {"done"} == {s for s, *_ in words.values()}
        assert len(post) == len(IDS) == len(words)
        assert sum(api.received.values()) <= len(IDS) + 1  # the call cut by Ctrl-C, again
        assert api.most_in_flight == 1  # its concurrency came from the queue too
        status = cli.status()["settings"]
        assert status["stage.post"]["call"] == "examples.post_record:post_record"
        assert status["stage.words"]["after"] == ["post"]


def test_changing_dropping_and_refusing_the_queues_stages(tmp_path: Path) -> None:
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        knobs = cli.knobs(**KNOBS)
        first = cli.run("run", str(ids), *knobs, *WORDS)
        assert first.returncode == 0, first.stderr + first.stdout
        assert "stage words: mystages:words (async) kept with the queue" in first.stderr
        done = _rows(cli, "words")
        assert {s for s, *_ in done.values()} == {"done"} and len(done) == len(IDS)
        # a new version contradicts the queue's: refused, naming both; nothing runs
        refused = cli.run("resume", *knobs, "--stage-version", "words=2")
        assert refused.returncode == 2, refused.stderr
        said = " ".join(refused.stderr.split())
        assert "stage words: version: the queue has '1', --stage-version says '2'" in said
        assert "--reconfigure" in said and _rows(cli, "words") == done
        # ... and a new call too (kind and after alike)
        other = cli.run("resume", *knobs, "--stage", "words=mystages:blocking")
        assert other.returncode == 2 and "call: the queue has 'mystages:words'" in other.stderr
        # with --reconfigure: recorded, and the stage runs again on every done paper
        v2 = cli.run("resume", *knobs, "--stage-version", "words=2", "--reconfigure")
        assert v2.returncode == 0, v2.stderr + v2.stdout
        assert "stage words: version '1' -> '2' (--reconfigure; recorded)" in v2.stderr
        assert {(s, v) for s, v, *_ in _rows(cli, "words").values()} == {("done", "2")}
        # how it runs: used and kept without --reconfigure
        wider = cli.run("resume", *knobs, "--stage-concurrency", "words=2")
        assert "stage words: concurrency 4 -> 2 (kept with the queue)" in wider.stderr
        assert "nothing left to do" in wider.stdout, wider.stdout + wider.stderr
        assert cli.status()["settings"]["stage.words"] == {
            "call": "mystages:words", "kind": "async", "concurrency": 2, "rate": "",
            "timeout": 120.0, "version": "2", "after": [],
        }  # fmt: skip
        shown = cli.run("status", "--db", str(cli.db)).stdout
        assert "stage.words       mystages:words (async, 2 at once" in shown, shown
        # a bare resume: the queue's stage, at its version: nothing left
        bare = cli.run("resume", *knobs)
        assert "nothing left to do" in bare.stdout, bare.stdout + bare.stderr
        # --drop-stage: an unknown name, then words (its results stay)
        unknown = cli.run("resume", *knobs, "--drop-stage", "nope")
        assert unknown.returncode == 2 and "the queue has no such stage (it has: words)" in (
            unknown.stderr
        )
        both = cli.run("resume", *knobs, "--drop-stage", "words", *WORDS)
        assert both.returncode == 2 and "--stage names it too" in both.stderr
        dropped = cli.run("resume", *knobs, "--drop-stage", "words")
        assert "stage words: dropped from the queue's stages" in dropped.stderr, dropped.stderr
        assert "stage.words" not in cli.status()["settings"]
        changes = cli.query("SELECT key, new_value FROM settings_changes WHERE key = 'stage.words'")
        assert ("stage.words", "null") in changes and len(changes) == 3  # version, conc., drop
        assert len(_rows(cli, "words")) == len(IDS)  # the results stay, in the records too
        (path,) = cli.query("SELECT outcome_path FROM jobs LIMIT 1")[0]
        assert "words" in json.loads(Path(path).read_text())["stages"]
        # named again, it is a new stage of the queue at version 1 (it runs again)
        again = cli.run("resume", *knobs, *WORDS)
        assert again.returncode == 0, again.stderr
        assert {v for _, v, *_ in _rows(cli, "words").values()} == {"1"}


def test_the_plan_lays_the_invocation_over_the_queues_stages() -> None:
    stored = {
        "a": {"call": "m:a", "kind": "thread", "concurrency": 4, "rate": "", "timeout": 120.0,
              "version": "1", "after": []},
        "b": {"call": "m:b", "kind": "async", "concurrency": 4, "rate": "", "timeout": 120.0,
              "version": "1", "after": ["a"]},
    }  # fmt: skip
    bare = plan(stored, StageRequest(), reconfigure=False)
    assert [s.name for s in bare.stages] == ["a", "b"] and not bare.to_store
    assert bare.stages[0].kind == "thread" and bare.stages[1].needs == ("a",)
    rate = plan(stored, StageRequest({"a": {"rate": ("5/s", "--stage-rate")}}), reconfigure=False)
    assert rate.to_store["a"]["rate"] == "5/s" and rate.stages[0].kind == "thread"
    with pytest.raises(ConfigError, match="stage b runs after it; drop that one too"):
        plan(stored, StageRequest(drop=("a",)), reconfigure=False)
    both = plan(stored, StageRequest(drop=("a", "b")), reconfigure=False)
    assert both.stages == () and both.to_drop == ("a", "b")
    with pytest.raises(ConfigError, match=r"kind: the queue has 'thread', x\.toml says 'process'"):
        plan(stored, StageRequest({"a": {"kind": ("process", "x.toml")}}), reconfigure=False)
    with pytest.raises(ConfigError, match="no call"):
        plan(stored, StageRequest({"c": {"rate": ("5/s", "--stage-rate")}}), reconfigure=False)


def test_a_group_of_processes_runs_the_queues_stages(tmp_path: Path) -> None:
    """--processes N: each process of the group is given the stages as prepared (the queue's
    with the invocation's), so none of them finds its stages contradicting the queue's."""
    with Mirror({p.stem: p for p in sample_pdfs()}) as mirror:
        cli, ids = _setup(tmp_path, mirror)
        knobs = cli.knobs(**{**KNOBS, "processes": 2})
        first = cli.run("run", str(ids), *knobs, *WORDS, timeout=180)
        assert first.returncode == 0, first.stderr + first.stdout
        assert {(s, v) for s, v, *_ in _rows(cli, "words").values()} == {("done", "1")}
        v2 = cli.run("resume", *knobs, "--stage-version", "words=2", "--reconfigure", timeout=180)
        assert v2.returncode == 0, v2.stderr + v2.stdout
        rows = _rows(cli, "words")
        assert len(rows) == len(IDS) and {(s, v) for s, v, *_ in rows.values()} == {("done", "2")}
