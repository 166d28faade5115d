"""Past one process: many rpa processes on one queue, with a real PostgreSQL server (and the
same on one SQLite file), one loopback server with a rate limit, a SIGKILL mid-run.

The server's own request timestamps never show more than N requests in any T-second window
across all processes; every job is done once; no PDF is fetched twice except those in flight
at the kill; the killed run's leases go to the live ones after its heartbeat stops.

Host health across processes: an outage one process found and stored binds another, whose
clock is off, with no request of its own to the host while it is down.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Cli, clean_env, injected, sample_pdfs, wait_for, write_ids
from test_faults import most_in_any_window, wait_until

from rpa.queue import open_store, reads
from rpa.testing.mirror import Fault, Mirror

N, T = 3, 1.0  # the budget: at most 3 requests in any second, for the whole fleet


def fleet_knobs(cli: Cli, db: str) -> list[str]:
    return [
        "--db", db, "--out", str(cli.out), "--pdf-url", cli.template,
        "--rate-limits", f"127.0.0.1={N}/{T:g}s", "--workers", "6", "--extract-workers", "1",
        "--no-progress", "--heartbeat-seconds", "0.5", "--connect-timeout", "2",
        "--read-timeout", "3", "--retry-base", "0.05", "--retry-max", "0.5",
    ]  # fmt: skip


def start(cli: Cli, *args: str) -> subprocess.Popen[bytes]:
    with (cli.workdir / "run.log").open("ab") as log:
        return subprocess.Popen(
            cli.args(*args), cwd=cli.workdir, env=clean_env(), stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip


def _holders(db: str) -> int:
    """How many runs hold leases on the queue now."""
    store = open_store(db, readonly=True)
    try:
        row = store.sql.one(
            "SELECT count(DISTINCT lease_owner) AS n FROM jobs WHERE lease_owner IS NOT NULL"
        )
        return int(row["n"]) if row else 0
    finally:
        store.close()


def fleet_run(tmp_path: Path, db: str) -> None:
    files = {f"{p.stem}-{i}": p for i in range(5) for p in sample_pdfs()}  # 30 papers
    # every download takes a moment, so the kill finds some in flight
    faults = {name: Fault.slow_body(0.3) for name in files}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        knobs = fleet_knobs(cli, db)
        first = start(cli, "run", str(ids), *knobs)
        wait_until(lambda: mirror.total_requests >= 1, 60, "the first run's requests", first)
        others = [start(cli, "resume", *knobs) for _ in range(2)]
        victim = others[0]

        def at_work() -> bool:  # each holds jobs (the others must find the victim dead)
            return mirror.total_requests >= 9 and _holders(db) == 3

        wait_until(at_work, 60, "three runs at work", victim)
        in_flight_at_kill = mirror.total_requests
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        codes = [p.wait(timeout=180) for p in (first, others[1])]
        log = (cli.workdir / "run.log").read_text(errors="replace")
        assert codes == [0, 0], log[-4000:]
        # a resume finds the queue finished (or finishes it) and has nothing left
        resumed = subprocess.run(
            cli.args("resume", *knobs), cwd=cli.workdir, env=clean_env(),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        times = mirror.request_times()
        counts = {name: mirror.requests(name) for name in files}
    store = open_store(db, readonly=True)
    try:
        status = reads.status(store, 0.0)
        results = reads.results_page(store, "", 1000)
        extracted_twice = store.sql.rows(
            "SELECT job_id, count(*) AS n FROM attempts WHERE stage = 'outcome' "
            "AND outcome = 'ok' GROUP BY job_id HAVING count(*) > 1"
        )
    finally:
        store.close()
    assert status["totals"]["done"] == len(files) and status["totals"]["failed"] == 0
    assert len(results) == len(files) and extracted_twice == []  # each job done once
    # the budget held across all processes, as the server saw it
    assert most_in_any_window(times, T) <= N, sorted(times)
    # nothing fetched twice but what the kill cut short (it held at most 6 jobs)
    again = [name for name, n in counts.items() if n > 1]
    assert len(again) <= 6 and all(n <= 2 for n in counts.values()), counts
    assert in_flight_at_kill < len(files)  # the kill came mid-run: this proved something
    runs = {r["status"] for r in status["runs"]}
    assert "crashed" in runs and "finished" in runs  # the killed run was found dead


@pytest.mark.timeout(300)
def test_three_processes_on_one_postgres_queue_one_budget_nothing_lost(
    tmp_path: Path, postgres_db: Callable[[], str]
) -> None:
    fleet_run(tmp_path, postgres_db())


@pytest.mark.timeout(300)
def test_three_processes_on_one_sqlite_queue_share_the_budget_too(tmp_path: Path) -> None:
    fleet_run(tmp_path, str(tmp_path / "fleet.db"))


#: a sitecustomize that sets the process's time.time 60 s ahead (injected into one process:
#: two hosts whose clocks differ cannot be had in a test)
_AHEAD = "import time\n_t = time.time\ntime.time = lambda: _t() + 60\n"


def _stored_down(cli: Cli) -> bool:
    return bool(cli.query("SELECT count(*) FROM hosts WHERE reason LIKE 'down since%'")[0][0])


def _b_holds(cli: Cli) -> bool:
    """Does the second run hold a lease (B's workers wait with their papers)?"""
    runs = [r[0] for r in cli.query("SELECT id FROM runs ORDER BY started_at")]
    return len(runs) == 2 and cli.count(f"lease_owner = '{runs[1]}'") > 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
@pytest.mark.timeout(150)
def test_a_host_one_process_found_down_holds_the_others_requests_even_with_clock_skew(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Process A finds the PDF host down (a proxy answering 502 to everything) and stores the
    outage in the queue; process B, started after on another "host" whose clock is 60 s ahead,
    holds its requests to it (restore, then follow at each heartbeat, as A renews the outage
    at each of its probes): the mirror sees none of B's requests while the host is down, and
    B never spends failures of its own to find it down. When the host is back both finish.
    Before, stored times were each process's own clock: B, 60 s ahead, read A's outage as long
    over and asked the host anyway."""
    db = request.getfixturevalue("postgres_db")() if backend == "postgres" else None
    names = [f"p{i:02d}" for i in range(24)]
    pdfs = sample_pdfs()
    files = {n: pdfs[i % len(pdfs)] for i, n in enumerate(names)}
    with Mirror(files, faults={n: Fault.slow_body(0.2) for n in names}) as mirror:
        cli = Cli(tmp_path, mirror.url_template, db)
        knobs = cli.knobs(progress=False, workers=2, extract_workers=1, heartbeat_seconds=0.5)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        a = cli.popen("run", str(ids), *knobs, "--user-agent", "rpa-A")
        procs = [a]
        try:
            wait_for(lambda: cli.count("stage = 'done'") >= 2, 60, "2 papers done")
            mirror.set_outage(Fault.status(502, body=b"<html>502 Bad Gateway</html>"))
            wait_for(lambda: _stored_down(cli), 30, "A to store the host down")
            ahead = injected(tmp_path, "ahead", _AHEAD)
            procs.append(cli.popen("resume", *knobs, "--user-agent", "rpa-B", **ahead))
            wait_for(lambda: _b_holds(cli), 30, "B to claim papers")
            # The outage lasts until A has probed again (its backoff: 1 s, 2, 4, ...): B must
            # hold through A's probe and follow A's renewal of the outage it stored.
            probed = mirror.outage_requests().get("rpa-A", 0)
            wait_for(lambda: mirror.outage_requests().get("rpa-A", 0) > probed, 30, "A's probe")
            mirror.set_outage(None)
            codes = [p.wait(timeout=90) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        said = (tmp_path / "run.log").read_text(errors="replace")
        asked = mirror.outage_requests()
    assert codes == [0, 0], said[-4000:]
    assert asked.get("rpa-B", 0) == 0, asked  # B asked nothing of the host while it was down
    assert asked.get("rpa-A", 0) >= 2, asked  # (A found it down, and probed it)
    assert "is down, found by another run of this queue" in said, said  # B says why it waits
    assert "Traceback" not in said and "answers again" in said, said
    assert cli.count("stage = 'done'") == len(names) and cli.count("stage = 'failed'") == 0
    done = [r[0] for r in cli.query("SELECT done FROM runs ORDER BY started_at")]
    assert len(done) == 2 and done[1] > 0, done  # B had work, and did it once the host was back
