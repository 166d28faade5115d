"""Politeness and failure handling through the real CLI against a misbehaving loopback mirror.

Every fault a real server produces (429 with Retry-After in seconds and as an HTTP-date, 503,
500, a reset mid-body, a body slower than the read timeout, an HTML page with 200, a 403 denial
page, a redirect, a lying Content-Length, 404, 410) is served by `rpa.testing.mirror`; the tests
assert each job's final stage, kind and attempts in the database and the requests the server
counted,
that the request rate at the server never exceeds the configured per-host limit, that a
Retry-After cooldown is stored and respected by a resumed run, and that a 403 opens the circuit
breaker.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, sample_pdfs, write_ids

from rpa import __version__
from rpa.hosts.rate import RateGate
from rpa.testing.mirror import Fault, Mirror

#: small knobs so that retries, backoff and timeouts take fractions of a second
FAST: dict[str, Any] = {
    "retry_base": 0.05,
    "retry_max": 0.5,
    "read_timeout": 1.0,  # well above a loaded loopback server's pauses
    "max_attempts": 3,
    "progress": False,
    "heartbeat_seconds": 0.5,
}
SMALLEST = min(sample_pdfs(), key=lambda p: p.stat().st_size)


def wait_until(
    condition: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `condition` until it holds; fail after `timeout` s, or at once if `proc` exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            if condition():  # it came true as the process ended
                return
            raise AssertionError(f"the run exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_log(cli: Cli) -> str:
    return (cli.workdir / "run.log").read_text(errors="replace")


def jobs_by_id(cli: Cli) -> dict[str, tuple[str, str | None, int]]:
    """id -> (stage, error_kind, attempts) for every job."""
    rows = cli.query("SELECT id, stage, error_kind, attempts FROM jobs")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def error_kinds(cli: Cli, job_id: str) -> list[str]:
    """The kinds of the failed download attempts of `job_id`, oldest first."""
    rows = cli.query(
        "SELECT error_kind FROM attempts WHERE job_id = ? AND stage = 'download' "
        "AND outcome = 'error' ORDER BY started_at",
        job_id,
    )
    return [r[0] for r in rows]


def attempts_of(cli: Cli, name: str) -> list[tuple[str, str, str | None]]:
    """(stage, outcome, kind) of every attempt of ext:`name`, oldest first."""
    rows = cli.query(
        "SELECT stage, outcome, error_kind FROM attempts WHERE job_id = ? ORDER BY started_at",
        f"ext:{name}",
    )
    return [(r[0], r[1], r[2]) for r in rows]


def host_row(cli: Cli) -> tuple[float | None, int | None, str | None] | None:
    try:
        rows = cli.query("SELECT cooldown_until, breaker_open, reason FROM hosts")
    except Exception:  # the table is created with the database
        return None
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of `times` inside any half-open window [t, t + window)."""
    ordered = sorted(times)
    return max((sum(1 for u in ordered if t <= u < t + window) for t in ordered), default=0)


def _counts(count: int | tuple[int, ...]) -> tuple[int, ...]:
    return count if isinstance(count, tuple) else (count,)


def wall_of(monotonic: float) -> float:
    """A time.monotonic() reading (the mirror's clock) as wall-clock time (the database's)."""
    return monotonic + (time.time() - time.monotonic())


# ---------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("stack", ["aiohttp", "httpx"])
def test_fault_matrix_ends_every_job_in_its_state(
    tmp_path: Path, queue_db: str, stack: str
) -> None:
    """Both HTTP stacks (--http-stack) classify every fault the same way."""
    # (url id, fault, final stage, final kind, attempts counted, requests at the server)
    retry_at = time.time() + 6.0  # an HTTP-date a few seconds ahead, past the CLI's start
    # attempts and requests: a number, or the numbers that may be seen (see s503/s500)
    Count = int | tuple[int, ...]
    matrix: list[tuple[str, Fault | None, str, str | None, Count, Count]] = [
        ("r429-seconds", Fault.status(429, retry_after="1", times=1), "done", None, 1, 2),
        (
            "r429-date",
            Fault.status(429, retry_after=email.utils.formatdate(retry_at, usegmt=True), times=1),
            "done",
            None,
            1,
            2,
        ),
        # A server error is no answer: the first is given back uncounted (the host may be
        # down); one after the host answered in between is the paper's (see test_outage).
        # Whether another paper's answer came between two failures is up to the scheduler.
        ("s503-twice", Fault.status(503, times=2), "done", None, (0, 1), 3),
        ("s500-always", Fault.status(500), "failed", "http_transient", 3, (4, 5, 6)),
        # A body cut off mid-way (reset, stalled, shorter than declared) once is no more the
        # paper's than a refused connection: an outage that begins under a download looks the
        # same. Uncounted; a second one after its host answered in between is the paper's
        # (test_outage: a paper whose download is always cut).
        ("reset-once", Fault.reset_mid_body(times=1), "done", None, 0, 2),
        ("slow-once", Fault.slow_body(3.0, times=1), "done", None, 0, 2),
        ("html-200", Fault.html_200(), "failed", "not_pdf", 1, 1),
        ("redirect", Fault.redirect("redirect-target"), "done", None, 0, 1),
        ("lying-once", Fault.lying_length(times=1), "done", None, 0, 2),
        ("gone-404", Fault.status(404), "failed", "not_found", 1, 1),
        ("gone-410", Fault.status(410), "failed", "not_found", 1, 1),
        ("plain", None, "done", None, 0, 1),
    ]
    files = {name: SMALLEST for name, *_ in matrix}
    files["redirect-target"] = SMALLEST
    faults = {name: fault for name, fault, *_ in matrix if fault is not None}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template, queue_db)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{name}" for name, *_ in matrix])
        result = cli.run(
            "run",
            str(ids),
            *cli.knobs(
                workers=12, extract_workers=2, mailto="lab@example.org", http_stack=stack, **FAST
            ),
        )
        assert result.returncode == 1, result.stdout + result.stderr  # some failed for good
        state = jobs_by_id(cli)
        table = ["fault            stage   kind            attempts  requests"]
        for name, _, stage, kind, attempts, requests in matrix:
            got = (*state[f"ext:{name}"], mirror.requests(name))
            table.append(f"{name:16} {got[0]:7} {got[1] or '-':15} {got[2]:8}  {got[3]:8}")
            seen = (got[0], got[1], got[2] in _counts(attempts), got[3] in _counts(requests))
            assert seen == (stage, kind, True, True), (name, got, attempts_of(cli, name))
        print("\nfault matrix (max-attempts 3):\n" + "\n".join(table))

        # the failed attempts were classified as the taxonomy says
        assert error_kinds(cli, "ext:r429-seconds") == ["http_transient"]
        assert error_kinds(cli, "ext:s503-twice") == ["http_transient"] * 2
        kinds_500 = error_kinds(cli, "ext:s500-always")
        assert kinds_500 == ["http_transient"] * mirror.requests("s500-always")  # every request
        assert error_kinds(cli, "ext:reset-once")[0] in {"truncated", "connection"}
        assert error_kinds(cli, "ext:slow-once") == ["timeout"]
        assert error_kinds(cli, "ext:lying-once") == ["truncated"]
        # the redirect was followed to the real file, which was fetched once
        assert mirror.requests("redirect-target") == 1
        outcome = cli.query("SELECT final_url FROM jobs WHERE id = 'ext:redirect'")[0][0]
        assert outcome.endswith("/pdf/redirect-target")
        # Retry-After was honoured, in seconds and as an HTTP-date
        first, second = mirror.request_times("r429-seconds")
        assert second - first >= 1.0
        assert wall_of(mirror.request_times("r429-date")[1]) >= int(retry_at) - 0.01
        # the 500 was retried with backoff, not in a tight loop
        s500 = mirror.request_times("s500-always")
        assert all(b - a >= 0.05 for a, b in itertools.pairwise(s500))
        # every request named the contact address (arXiv asks robots for one)
        assert mirror.user_agents() == {
            f"rpa/{__version__} (mailto:lab@example.org)": mirror.total_requests
        }
        status = cli.status()
        assert status["stuck"]["count"] == 0
        assert status["totals"]["done"] == 8 and status["totals"]["failed"] == 4
        # a host with no configured limit is not rate-limited: the first burst had all 12
        assert most_in_any_window(mirror.request_times(), 1.0) >= len(matrix)


# ---------------------------------------------------------------------------- politeness


def test_request_rate_at_the_server_never_exceeds_the_host_limit(tmp_path: Path) -> None:
    names = [f"paper-{i:02d}" for i in range(16)]
    files = {name: SMALLEST for name in names}
    files["moved-target"] = SMALLEST
    faults = {
        "paper-03": Fault.status(503, times=1),  # a retry is a request too
        "paper-07": Fault.redirect("moved-target"),  # so is each hop of a redirect
    }
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        result = cli.run(
            "run",
            str(ids),
            *cli.knobs(
                workers=16,
                download_concurrency=16,
                extract_workers=2,
                rate_limits="127.0.0.1=4/1s",
                user_agent="lab-harvester/2 (+mailto:ops@example.org)",
                **FAST,
            ),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert mirror.user_agents() == {"lab-harvester/2 (+mailto:ops@example.org)": 18}
        times = mirror.request_times()
        assert len(times) == 16 + 1 + 1  # one retry, one redirect hop
        busiest = most_in_any_window(times, 1.0)
        offsets = [round(t - times[0], 3) for t in times]
        print(f"\nrequest times at the server (4/1s): {offsets}; busiest second: {busiest}")
        assert busiest == 4  # the limit holds, and it is what paced the run
        assert times[-1] - times[0] >= 3.0  # 18 requests at 4 a second need over 3 s


async def test_a_rate_slot_is_held_until_the_answer_began(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unit check of the fix behind the test above: a request keeps its slot until its answer
    began, then `period` more, so a slow answer delays the requests after it (injected clock)."""
    now = [1000.0]
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        now[0] += delay
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    gate = RateGate("host", count=2, period=1.0, clock=lambda: now[0])
    answer = asyncio.Event()

    async def slow_request() -> float:
        await gate.acquire()
        sent = now[0]
        await answer.wait()
        gate.answered()
        return sent

    async def request() -> float:
        await gate.acquire()
        gate.answered()  # answered at once
        return now[0]

    slow = asyncio.create_task(slow_request())
    await real_sleep(0)
    assert gate.statistics().in_use == 1
    # one slot stays with the unanswered request: the others share the second one
    assert [await request() for _ in range(3)] == [1000.0, 1001.0, 1002.0]
    now[0] = 1010.0
    answer.set()
    assert await slow == 1000.0
    # its slot comes back one period after its answer (1011), not after it was taken (1001)
    assert [await request() for _ in range(2)] == [1010.0, 1011.0]

    # every slot unanswered: the next request waits for an answer, then one period more
    single = RateGate("host", count=1, period=1.0, clock=lambda: now[0])
    answer.clear()
    gate = single
    slow = asyncio.create_task(slow_request())
    waiting = asyncio.create_task(request())
    await real_sleep(0.01)
    assert not waiting.done() and single.statistics().waiting == 1
    now[0] = 1020.0
    answer.set()
    assert await waiting == 1021.0


def interrupt(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    os.kill(proc.pid, sig)
    return proc.wait(timeout=60)


def test_retry_after_sets_a_host_cooldown_stored_in_the_database(tmp_path: Path) -> None:
    with Mirror({"busy": SMALLEST}, faults={"busy": Fault.status(429, retry_after="30")}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:busy"])
        proc = cli.popen("run", str(ids), *cli.knobs(workers=2, extract_workers=1, **FAST))
        try:
            wait_until(lambda: bool(mirror.requests("busy")), 60, "the 429", proc)
            asked = wall_of(mirror.request_times("busy")[0])
            wait_until(lambda: (host_row(cli) or (None,))[0] is not None, 30, "the cooldown", proc)
        finally:
            code = interrupt(proc)
        assert code == 130, run_log(cli)
        cooldown_until, breaker, reason = host_row(cli) or (None, None, None)
        assert cooldown_until is not None and reason is not None
        assert asked + 30 <= cooldown_until <= asked + 32
        assert "429" in reason and not breaker
        # the job waits for its next attempt in the queue, not in a worker, and no sooner
        (next_at, attempts, lease) = cli.query(
            "SELECT next_attempt_at, attempts, lease_owner FROM jobs WHERE id = 'ext:busy'"
        )[0]
        assert attempts == 1 and lease is None and next_at >= cooldown_until - 0.01
        assert mirror.requests("busy") == 1  # no retry inside the cooldown
        hosts = {h["host"]: h for h in cli.status().get("hosts", [])}
        assert "127.0.0.1" in hosts, hosts


def test_a_429_on_a_jobs_last_attempt_still_sets_the_host_cooldown(tmp_path: Path) -> None:
    with Mirror({"busy": SMALLEST}, faults={"busy": Fault.status(429, retry_after="30")}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:busy"])
        knobs = cli.knobs(workers=1, extract_workers=1, **FAST | {"max_attempts": 1})
        result = cli.run("run", str(ids), *knobs)
        assert result.returncode == 1, result.stdout + result.stderr
        assert jobs_by_id(cli)["ext:busy"] == ("failed", "http_transient", 1)
        asked = wall_of(mirror.request_times("busy")[0])
        cooldown_until = (host_row(cli) or (None,))[0]
        # the job is over, but the host's request binds every later job
        assert cooldown_until is not None and asked + 30 <= cooldown_until <= asked + 32


def test_the_attempt_count_and_due_time_survive_a_resume(tmp_path: Path) -> None:
    # a 429 without Retry-After: an answer (a 5xx would be the host down, uncounted)
    with Mirror({"flaky": SMALLEST}, faults={"flaky": Fault.status(429)}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:flaky"])
        # three seconds between attempts: the run is stopped while the job waits for its second
        # (room for a loaded machine to see the failure and deliver the signal)
        knobs = cli.knobs(
            workers=1, extract_workers=1, **FAST | {"retry_base": 3.0, "retry_max": 3.0}
        )
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: cli.count("attempts = 1") == 1, 60, "the first failure", proc)
        finally:
            assert interrupt(proc) == 130, run_log(cli)
        next_at, lease = cli.query("SELECT next_attempt_at, lease_owner FROM jobs")[0]
        assert mirror.requests("flaky") == 1 and lease is None
        resumed = cli.run("resume", *knobs)
        assert resumed.returncode == 1, resumed.stdout + resumed.stderr
        # the resumed run went on counting: two more tries, not three, and none before due
        assert jobs_by_id(cli)["ext:flaky"] == ("failed", "http_transient", 3)
        assert mirror.requests("flaky") == 3
        assert wall_of(mirror.request_times("flaky")[1]) >= next_at - 0.01


def test_a_resumed_run_does_not_ask_the_host_before_the_stored_cooldown(tmp_path: Path) -> None:
    names = ["first", "second", "third"]
    # 12 s: the stop and a new process's start-up must fit inside it on a loaded machine
    faults = {"first": Fault.status(429, retry_after="12", times=1)}
    with Mirror(dict.fromkeys(names, SMALLEST), faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        knobs = cli.knobs(
            workers=1,
            download_concurrency=1,
            extract_workers=1,
            grace=0.2,
            **FAST | {"max_attempts": 10},
        )
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_until(lambda: (host_row(cli) or (None,))[0] is not None, 60, "a cooldown", proc)
        finally:
            assert interrupt(proc) == 130, run_log(cli)
        # the run was stopped inside the cooldown: only the 429 reached the server
        assert mirror.total_requests == 1
        told_to_wait_from = mirror.request_times("first")[0]
        resumed = cli.run("resume", *knobs)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "asked us to wait" in resumed.stdout
        later = mirror.request_times()[1:]
        assert len(later) == 3
        # every request of the resumed run came after the cooldown the server asked for
        assert min(later) >= told_to_wait_from + 12.0 - 0.01
        assert {n: mirror.requests(n) for n in names} == {"first": 2, "second": 1, "third": 1}


# ---------------------------------------------------------------------------- the breaker


def test_403_stops_downloads_finishes_what_is_downloaded_and_resume_completes(
    tmp_path: Path,
) -> None:
    files = {f"{p.stem}-{i}": p for i in range(2) for p in sample_pdfs()}
    names = list(files)
    # 8 workers hold at most 8 jobs and claim in queue order, so the tenth paper is claimed (and
    # asked for) only after two papers have finished: the breaker cannot open on an empty stage
    denied = names[9]
    with Mirror(files, faults={denied: Fault.deny_403()}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        knobs = cli.knobs(workers=8, download_concurrency=2, extract_workers=1, **FAST)
        result = cli.run("run", str(ids), *knobs)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "refused us" in result.stdout and "rpa resume" in result.stdout
        assert "arXiv's bulk data" not in result.stdout  # the advice is arXiv's, for arXiv
        refused_at = mirror.request_times(denied)[0]
        # nothing was asked after the 403 but what was already in flight (2 at once here)
        after = [t for t in mirror.request_times() if t > refused_at]
        assert len(after) <= 1, after
        assert mirror.requests(denied) == 1  # never retried, let alone in a tight loop
        state = jobs_by_id(cli)
        assert state[f"ext:{denied}"] == ("queued", None, 0)  # released, not failed
        fetched = {n for n in names if mirror.requests(n)} - {denied}
        # every paper downloaded before the breaker opened still finished
        assert {f"ext:{n}" for n in fetched} == {j for j, s in state.items() if s[0] == "done"}
        assert len(fetched) >= 2
        breaker_at = cli.query("SELECT updated_at FROM hosts WHERE breaker_open = 1")[0][0]
        finished_after = cli.query("SELECT count(*) FROM results WHERE created_at > ?", breaker_at)
        assert finished_after[0][0] >= 1  # extraction went on after the breaker opened
        assert all(s[0] in ("done", "queued") for s in state.values())
        assert cli.status()["stuck"]["count"] == 0

        mirror.set_fault(denied, None)  # the host lets us in again
        resumed = cli.run("resume", *knobs)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert cli.status()["totals"]["done"] == len(names)
        assert mirror.requests(denied) == 2
        assert all(mirror.requests(n) == 1 for n in names if n != denied)
        assert cli.query("SELECT breaker_open FROM hosts")[0][0] == 0


def test_a_redirect_target_that_refuses_us_holds_its_papers_queued_until_a_resume(
    tmp_path: Path,
) -> None:
    """A 403 from another host than --pdf-url's (where some papers' redirects lead): that
    host's breaker opens and its papers are held, queued and uncounted, not failed (a host's
    refusal is not the papers' fault): no process claims them again in this run, the other
    papers go on, and when only they are left the run ends `denied` (exit 1, as for the
    primary's refusal) saying which host and how many wait. `rpa status` shows them queued,
    held, why. Once the target serves again, `rpa resume` asks it again and finishes them.
    Before: the paper failed for good as access_denied (and before that, looped for ever)."""
    held = ["r1", "r2"]
    with Mirror({f"x{n}": SMALLEST for n in held}) as target:
        for n in held:
            target.set_fault(f"x{n}", Fault.deny_403())
        # another host name for 127.0.0.1, so another host: its own gate and breaker
        away = {n: f"http://localhost:{target.port}/pdf/x{n}" for n in held}
        files = {n: SMALLEST for n in ["a", "b", "c", *held]}
        faults = {n: Fault.redirect_to(away[n]) for n in held}
        with Mirror(files, faults=faults) as mirror:
            cli = Cli(tmp_path, mirror.url_template)
            ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
            knobs = cli.knobs(follow_redirects="any", **FAST)
            result = cli.run("run", str(ids), *knobs, timeout=60)
            said = result.stdout + result.stderr
            assert result.returncode == 1, said  # as when --pdf-url's host refuses us
            # each asked at the target once at most (one may meet the breaker the other
            # opened), never again: no loop
            assert all(target.requests(f"x{n}") <= 1 for n in held), said
            assert sum(target.requests(f"x{n}") for n in held) >= 1, said
            assert all(mirror.requests(n) == 1 for n in files), said
            state = jobs_by_id(cli)
            assert {state[f"ext:{n}"] for n in held} == {("queued", "access_denied", 0)}
            assert {state[f"ext:{n}"][0] for n in ("a", "b", "c")} == {"done"}
            assert "localhost refused us" in said and "Traceback" not in said
            assert "2 papers wait for hosts that refused us: localhost" in said, said
            assert cli.query("SELECT status FROM runs")[0][0] == "denied"
            status = cli.status()
            assert status["totals"]["queued"] == 2 and status["totals"]["failed"] == 0
            assert status["held"]["count"] == 2, status["held"]
            assert status["held"]["sample_kind"] == "access_denied"
            assert "localhost" in status["held"]["sample_message"]
            shown = cli.run("status", "--db", str(cli.db)).stdout
            assert "held: 2 queued papers wait for a host that refused us" in shown, shown

            for n in held:  # the target lets us in again
                target.set_fault(f"x{n}", None)
            resumed = cli.run("resume", *knobs, timeout=60)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            assert "2 papers held for a host that refused us: asking again" in resumed.stdout
            assert cli.status()["totals"]["done"] == len(files)
            assert all(mirror.requests(n) == 1 for n in ("a", "b", "c"))  # not asked again
            assert cli.query("SELECT breaker_open FROM hosts WHERE host = 'localhost'") == [(0,)]
