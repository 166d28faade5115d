"""The queue's contract, run against every backend (huey's pattern): leasing, fencing,
reclaim, retries, counts, the queue's settings, `retry_failed`, status.

Two claimers never hold one job; a worker whose lease was reclaimed cannot write (an expired
lease nobody took is still its holder's); dead runs' leases are reclaimed, never by
themselves; stage counts stay exact through every transition.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import queue_backends

from rpa.errors import DeclaredDead
from rpa.queue import QueueStore, catalog, hosts, jobs, open_store, reads, retry, runs
from rpa.queue.model import HELD, Downloaded, Extracted, Failure, RunInfo

NOW = 1_000_000.0
KEYS = [f"2301.{i:05d}" for i in range(1, 201)]


@pytest.fixture(params=queue_backends())
def new_db(request: pytest.FixtureRequest) -> Callable[[], str]:
    """A factory of empty queue locations for the backend under test."""
    factory: Callable[[], str] = request.getfixturevalue(f"{request.param}_db")
    return factory


@pytest.fixture
def db(new_db: Callable[[], str]) -> Iterator[str]:
    location = new_db()
    store = open_store(location)
    store.enqueue(KEYS, NOW)
    store.close()
    yield location


@pytest.fixture
def store(db: str) -> Iterator[QueueStore]:
    s = open_store(db)
    yield s
    s.close()


def downloaded(n: int = 1) -> Downloaded:
    return Downloaded("/x.pdf", n, "0" * 64, "http://x/pdf", 200, 0.1)


def record(job_id: str) -> dict[str, Any]:
    return {"id": job_id, "title": "t", "page_count": 1, "word_count": 2,
            "references": {"count": 0}, "pdf": {"sha256": "0" * 64, "bytes": 10}}  # fmt: skip


def stage_of(store: QueueStore, job_id: str) -> tuple[Any, ...]:
    row = store.sql.one("SELECT stage, lease_owner FROM jobs WHERE id = ?", (job_id,))
    assert row is not None
    return row["stage"], row["lease_owner"]


def test_enqueue_is_idempotent_and_claims_are_fifo(store: QueueStore) -> None:
    assert store.enqueue(["2301.00001", "2301.00002", "2301.99999"], NOW) == 1
    assert reads.totals(store, NOW).total == 201
    assert [j.id for j in jobs.claim(store, "r", 3, 60, NOW)] == KEYS[:3]


def test_a_claim_takes_no_more_than_its_share_of_the_queue_s_end(store: QueueStore) -> None:
    """200 jobs, two live runs: run-a, holding none, claims 100 of the 150 it asks (half of
    what is claimable or leased), and no more while it holds them; run-b the other 100. A
    group of 4 whose other processes have not registered yet shares as 4. Without `share`, a
    claim takes what it asks."""
    runs.register_run(store, RunInfo("run-a", "run", NOW, 5.0, "{}"))
    runs.register_run(store, RunInfo("run-b", "run", NOW, 5.0, "{}"))
    a = jobs.claim(store, "run-a", 150, 60, NOW, share=1)
    assert len(a) == 100
    assert jobs.claim(store, "run-a", 150, 60, NOW, share=1, holding=100) == []
    b = jobs.claim(store, "run-b", 150, 60, NOW, share=1)
    assert len(b) == 100
    # run-a finished 60 of its jobs; 40 new ones came: of 180 claimable or leased, 90 each
    for job in a[:60]:
        assert jobs.complete(store, "run-a", job.lease, record(job.id), "/x.json", NOW)
    store.enqueue([f"2302.{i:05d}" for i in range(1, 41)], NOW)
    assert len(jobs.claim(store, "run-a", 150, 60, NOW, share=1, holding=40)) == 40
    assert jobs.claim(store, "run-b", 150, 60, NOW, share=1, holding=100) == []
    # a group of 4: 40 new jobs, 180 leased: a share is 55, and run-b holds 100
    store.enqueue([f"2303.{i:05d}" for i in range(1, 41)], NOW)
    assert jobs.claim(store, "run-b", 150, 60, NOW, share=4, holding=100) == []
    assert len(jobs.claim(store, "run-c", 150, 60, NOW, share=4)) == 40  # holding none
    assert len(jobs.claim(store, "run-c", 150, 60, NOW)) == 0  # nothing left
    # 100 s later run-a and run-b are dead by their heartbeats: run-d is alone, and takes all
    later = NOW + 100
    runs.register_run(store, RunInfo("run-d", "run", later, 5.0, "{}"))
    store.enqueue(["2304.00001", "2304.00002", "2304.00003"], later)
    assert len(jobs.claim(store, "run-d", 40, 60, later, share=1, holding=50)) == 3
    # without a share, what it asks
    store.enqueue(["2304.00004", "2304.00005"], later)
    runs.register_run(store, RunInfo("run-e", "run", later, 5.0, "{}"))
    assert len(jobs.claim(store, "run-d", 40, 60, later, holding=500)) == 2


def test_two_claimers_in_threads_never_share_a_job(db: str) -> None:
    """Real concurrency: four connections claim from one queue at once."""
    setup = open_store(db)
    setup.enqueue([f"2302.{i:05d}" for i in range(1, 3801)], NOW)  # 4,000 in all
    setup.close()
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def claimer(name: str) -> None:
        store = open_store(db)
        got: list[str] = []
        # The first rounds' claims start together (one may otherwise take the write lock again
        # and again before the others' busy handlers retry: CI saw one claimer take all 4,000)
        for _ in range(10):
            barrier.wait()
            got.extend(j.id for j in jobs.claim(store, name, 3, 60, NOW))
        while batch := jobs.claim(store, name, 3, 60, NOW):
            got.extend(j.id for j in batch)
        claimed[name] = got
        store.close()

    threads = [threading.Thread(target=claimer, args=(f"run{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [job for got in claimed.values() for job in got]
    assert len(everything) == len(set(everything)) == 4000
    # the claimers really did interleave (otherwise this test proves nothing)
    assert all(claimed.values()), {k: len(v) for k, v in claimed.items()}


def test_fence_rejects_a_worker_whose_lease_was_reclaimed(store: QueueStore) -> None:
    [old] = jobs.claim(store, "run-a", 1, 10, NOW)
    # run-a goes quiet; its lease expires and is reclaimed, then run-b claims the job
    assert runs.reclaim_stale(store, NOW + 11).expired_leases == 1
    [new] = jobs.claim(store, "run-b", 1, 10, NOW + 11)
    assert new.id == old.id and new.token == old.token + 1
    # the old holder's late writes match nothing
    assert not jobs.checkpoint_download(store, "run-a", old.lease, downloaded(), NOW + 12)
    assert not jobs.complete(store, "run-a", old.lease, record(old.id), "x", NOW + 12)
    assert not jobs.fail(store, "run-a", old.lease, Failure("timeout", "", True), NOW + 12)
    # the new holder's do
    assert jobs.checkpoint_download(store, "run-b", new.lease, downloaded(), NOW + 12)
    assert jobs.complete(store, "run-b", new.lease, record(new.id), "x", NOW + 12)
    assert stage_of(store, old.id) == ("done", None)
    assert reads.results_page(store, "", 10)[0][0] == old.id


def test_an_expired_lease_nobody_took_is_still_its_holders(store: QueueStore) -> None:
    """A run paused past its lease (a stall, a SIGSTOP) keeps what nobody took: its own
    reclaim never frees it, its heartbeat renews it, its writes pass the fence. Once another
    run frees it, they do not."""
    runs.register_run(store, RunInfo("run-a", "run", NOW, 5.0, "{}"))
    a, b = jobs.claim(store, "run-a", 2, 10, NOW)
    assert jobs.checkpoint_download(store, "run-a", a.lease, downloaded(), NOW + 10.5)
    got = runs.reclaim_stale(store, NOW + 60, by="run-a")
    assert (got.dead_runs, got.dead_leases, got.expired_leases) == (0, 0, 0)
    assert runs.heartbeat(store, "run-a", [a.lease, b.lease], 10, NOW + 60).lost == set()
    assert runs.reclaim_stale(store, NOW + 61, by="run-b").expired_leases == 0  # renewed
    assert runs.reclaim_stale(store, NOW + 90, by="run-b").dead_runs == 1
    assert not jobs.checkpoint_download(store, "run-a", b.lease, downloaded(), NOW + 90)


def test_a_run_found_dead_learns_it_and_claims_nothing(store: QueueStore) -> None:
    runs.register_run(store, RunInfo("run-a", "run", NOW, 5.0, "{}"))
    runs.register_run(store, RunInfo("run-b", "run", NOW, 5.0, "{}"))
    [held] = jobs.claim(store, "run-a", 1, 10, NOW)
    runs.heartbeat(store, "run-b", [], 10, NOW + 30)
    assert runs.reclaim_stale(store, NOW + 30, by="run-b").dead_runs == 1  # run-a
    with pytest.raises(DeclaredDead):
        runs.heartbeat(store, "run-a", [held.lease], 10, NOW + 31)
    assert jobs.claim(store, "run-a", 5, 10, NOW + 31) == []
    assert not runs.end_run(store, "run-a", "finished", NOW + 32)  # stays crashed
    statuses = {r["id"]: r["status"] for r in reads.status(store, NOW + 32)["runs"]}
    assert statuses == {"run-a": "crashed", "run-b": "running"}


def test_heartbeat_renews_the_leases_it_holds_and_reports_lost_ones(store: QueueStore) -> None:
    runs.register_run(store, RunInfo("run-a", "run", NOW, 5.0, "{}"))
    a, b = jobs.claim(store, "run-a", 2, 10, NOW)
    runs.reclaim_stale(store, NOW + 11)  # both expire
    jobs.claim(store, "run-b", 1, 10, NOW + 11)  # a is claimed again, by run-b (FIFO)
    # a is another run's now: lost; b was freed but nobody took it (and it is not renewed:
    # its fence refuses run-a's writes, which say so)
    assert runs.heartbeat(store, "run-a", [a.lease, b.lease], 10, NOW + 11).lost == {a.id}
    assert not jobs.checkpoint_download(store, "run-a", b.lease, downloaded(), NOW + 12)
    c, d = jobs.claim(store, "run-c", 2, 10, NOW + 20)
    assert runs.heartbeat(store, "run-c", [c.lease, d.lease], 10, NOW + 25).lost == set()
    # renewed: still writable after the original expiry
    assert jobs.checkpoint_download(store, "run-c", c.lease, downloaded(), NOW + 33)


def test_dead_run_leases_are_reclaimed_before_they_expire(store: QueueStore) -> None:
    """Dead by its heartbeat alone (never by hostname and pid: a pid here may be another
    container's), its leases are freed though they have an hour to run."""
    runs.register_run(store, RunInfo("dead-run", "run", NOW, 5.0, "{}", pid=os.getpid()))
    jobs.claim(store, "dead-run", 5, 3600, NOW)
    assert runs.dead_runs(store, NOW + 19) == []
    assert "dead-run" in runs.dead_runs(store, NOW + 21)
    result = runs.reclaim_stale(store, NOW + 21)
    assert (result.dead_runs, result.dead_leases, result.expired_leases) == (1, 5, 0)
    assert reads.status(store, NOW + 21)["runs"][0]["status"] == "crashed"
    assert len(jobs.claim(store, "next", 300, 60, NOW + 21)) == 200


def test_a_run_is_dead_after_three_of_its_own_missed_heartbeats(store: QueueStore) -> None:
    """One definition of a dead run (model.dead_after), from each run's own interval."""
    runs.register_run(store, RunInfo("slow", "run", NOW, 60.0, "{}", host="elsewhere"))
    runs.register_run(store, RunInfo("fast", "run", NOW, 1.0, "{}", host="elsewhere"))
    assert runs.dead_runs(store, NOW + 7.9) == []
    assert runs.dead_runs(store, NOW + 8.1) == ["fast"]  # 3 x 1 s + 5 s
    assert runs.live_runs(store, NOW + 9) == {"slow"}
    assert sorted(runs.dead_runs(store, NOW + 185.1)) == ["fast", "slow"]  # 3 x 60 s + 5 s
    status = reads.status(store, NOW + 9)
    assert {r["id"]: r["status"] for r in status["runs"]} == {"slow": "running", "fast": "dead"}


def test_retry_is_not_claimable_before_its_time_and_counts_attempts(store: QueueStore) -> None:
    [job] = jobs.claim(store, "r", 1, 60, NOW)
    assert jobs.fail(store, "r", job.lease, Failure("timeout", "slow", False, NOW + 30), NOW)
    assert job.id not in {j.id for j in jobs.claim(store, "r", 500, 60, NOW + 29)}
    [again] = jobs.claim(store, "r", 1, 60, NOW + 31)
    assert again.id == job.id and again.attempts == 1


def test_failed_is_final(store: QueueStore) -> None:
    [job] = jobs.claim(store, "r", 1, 60, NOW)
    jobs.fail(store, "r", job.lease, Failure("not_pdf", "html", True), NOW)
    row = store.sql.one("SELECT stage, error_kind FROM jobs WHERE id = ?", (job.id,))
    assert row is not None and (row["stage"], row["error_kind"]) == ("failed", "not_pdf")
    assert job.id not in {j.id for j in jobs.claim(store, "r", 500, 60, NOW + 1e6)}


def _counts(store: QueueStore) -> tuple[dict[str, int], dict[str, int]]:
    kept = {r["stage"]: int(r["n"]) for r in store.sql.rows(
        "SELECT stage, sum(n) AS n FROM stage_counts GROUP BY stage") if r["n"]}  # fmt: skip
    real = {r["stage"]: int(r["n"]) for r in store.sql.rows(
        "SELECT stage, count(*) AS n FROM jobs GROUP BY stage")}  # fmt: skip
    return kept, real


def test_stage_counts_stay_exact_through_every_transition(store: QueueStore) -> None:
    assert _counts(store) == ({"queued": 200}, {"queued": 200})
    a, b, c, d = jobs.claim(store, "r", 4, 60, NOW)
    assert jobs.checkpoint_download(store, "r", a.lease, downloaded(), NOW)
    assert jobs.complete(store, "r", b.lease, record(b.id), "x.json", NOW)
    assert jobs.fail(store, "r", c.lease, Failure("k", "m", True), NOW)
    assert jobs.checkpoint_extract(store, "r", d.lease, Extracted("/t", {"ok": True}, 1.0), NOW)
    # a fenced-off write changes nothing, counts included
    assert not jobs.complete(store, "r", b.lease, record(b.id), "x.json", NOW)
    assert store.enqueue(["2301.00001", "2302.00001"], NOW) == 1
    kept, real = _counts(store)
    assert kept == real == {"queued": 197, "downloaded": 1, "extracted": 1, "done": 1, "failed": 1}
    assert retry.retry_failed(store, None, NOW) == {"k": 1}
    kept, real = _counts(store)
    assert kept == real == {"queued": 198, "downloaded": 1, "extracted": 1, "done": 1}


def test_retry_failed_keeps_checkpoints_and_gives_fresh_attempts(store: QueueStore) -> None:
    a, b, c = jobs.claim(store, "r", 3, 60, NOW)
    # a failed downloading, b extracting (its PDF is checkpointed), c crashed a process twice
    jobs.fail(store, "r", a.lease, Failure("connection", "refused", True), NOW)
    jobs.checkpoint_download(store, "r", b.lease, downloaded(), NOW)
    jobs.fail(store, "r", b.lease, Failure("invalid_pdf", "broken", True), NOW)
    jobs.checkpoint_download(store, "r", c.lease, downloaded(), NOW)
    jobs.fail(store, "r", c.lease, Failure("poison", "killed 2", True, crashed=True), NOW)
    # b's PDF could not be read: it is fetched again (its copy under --out removed first)
    assert retry.unreadable_downloads(store, ["poison"]) == []
    assert retry.unreadable_downloads(store, None) == [b.id]
    assert retry.retry_failed(store, ["invalid_pdf", "poison"], NOW + 1) == {
        "invalid_pdf": 1,
        "poison": 1,
    }
    assert stage_of(store, a.id) == ("failed", None)  # not of those kinds
    again = {j.id: j for j in jobs.claim(store, "r2", 500, 60, NOW + 2)}
    assert again[b.id].stage == "queued" and again[b.id].pdf_path is None
    assert again[c.id].stage == "downloaded" and again[c.id].pdf_path == "/x.pdf"
    assert (again[c.id].attempts, again[c.id].crashes) == (0, 0)
    assert a.id not in again
    assert retry.retry_failed(store, None, NOW + 3) == {"connection": 1}
    assert retry.retry_failed(store, None, NOW + 3) == {}
    [back] = jobs.claim(store, "r3", 1, 60, NOW + 4)
    assert (back.id, back.stage) == (a.id, "queued")


def test_queue_settings_are_stored_and_changes_recorded(store: QueueStore) -> None:
    assert catalog.queue_settings(store) == {}
    catalog.store_queue_settings(store, {"out": "/data/a", "max_pdf_mb": 100.0}, "run-1", NOW)
    # unchanged: not a change
    catalog.store_queue_settings(store, {"out": "/data/a"}, "run-2", NOW + 1)
    assert catalog.settings_changes(store) == []
    catalog.store_queue_settings(store, {"out": "/data/b"}, "run-3", NOW + 2)
    assert catalog.queue_settings(store) == {"max_pdf_mb": 100.0, "out": "/data/b"}
    [change] = catalog.settings_changes(store)
    assert (change["key"], change["old_value"], change["new_value"], change["run_id"]) == (
        "out",
        '"/data/a"',
        '"/data/b"',
        "run-3",
    )
    assert reads.status(store, NOW)["settings"]["out"] == "/data/b"


def test_hosts_cooldown_only_grows_and_breaker_opens_and_closes(store: QueueStore) -> None:
    hosts.set_cooldown(store, "h.org", NOW + 60, "429", NOW)
    # an earlier end does not shorten it
    hosts.set_cooldown(store, "h.org", NOW + 10, "429 again", NOW)
    state = hosts.host_state(store, "h.org")
    assert state is not None and state.cooldown_until == NOW + 60 and not state.breaker_open
    hosts.open_breaker(store, "h.org", "403", NOW)
    state = hosts.host_state(store, "h.org")
    assert state is not None and state.breaker_open and state.reason == "403"
    hosts.close_breaker(store, "h.org", NOW)
    state = hosts.host_state(store, "h.org")
    assert state is not None and not state.breaker_open
    assert hosts.host_state(store, "other.org") is None


def test_a_job_held_for_a_host_that_refused_us_waits_queued_until_released(
    store: QueueStore,
) -> None:
    """Held (a redirect's target refused us): queued and uncounted, claimed by nobody, not a
    retry the run waits for (`next_due`), counted by `held` and in status as queued; a new
    run's `release_held` makes it claimable with its attempts as they were."""
    a, b = jobs.claim(store, "r", 2, 60, NOW)
    denied = Failure("access_denied", "HTTP 403 from http://t.org/x", False, HELD,
                     count_attempt=False)  # fmt: skip
    assert jobs.fail(store, "r", a.lease, denied, NOW)
    jobs.release(store, "r", [b.lease])
    taken = jobs.claim(store, "r", 500, 60, NOW + 10**9)  # never due, however late
    assert a.id not in {j.id for j in taken} and len(taken) == 199
    assert jobs.next_due(store, NOW, ("queued",)) is None  # nothing the run could wait for
    assert hosts.held(store) == 1
    status = reads.status(store, NOW)
    assert status["totals"]["queued"] == 1 and status["totals"]["retry_scheduled"] == 0
    assert status["held"]["count"] == 1 and status["held"]["sample_id"] == a.id
    assert hosts.release_held(store, NOW + 1) == 1 and hosts.held(store) == 0
    [again] = jobs.claim(store, "r2", 1, 60, NOW + 2)
    assert (again.id, again.attempts, again.error_kind) == (a.id, 0, "access_denied")


def test_next_due_and_end_of_run_totals(store: QueueStore) -> None:
    runs.register_run(store, RunInfo("r", "run", NOW, 5.0, "{}"))
    claimed = jobs.claim(store, "r", 200, 60, NOW)
    assert jobs.next_due(store, NOW, ("queued",)) is None  # everything is leased
    jobs.fail(store, "r", claimed[0].lease, Failure("timeout", "", False, NOW + 42), NOW)
    assert jobs.next_due(store, NOW, ("queued",)) == pytest.approx(42)
    runs.register_run(store, RunInfo("other", "run", NOW, 5.0, "{}"))
    [held] = jobs.claim(store, "other", 1, 60, NOW + 43)
    runs.end_run(store, "r", "interrupted", NOW + 44)  # gives r's leases back
    totals, elsewhere = reads.end_of_run_totals(store, "r", NOW + 44)
    assert (totals.in_progress, totals.queued, elsewhere) == (1, 199, 1)
    assert held.id == claimed[0].id


def test_rate_slots_are_one_budget_for_every_process(store: QueueStore) -> None:
    """A host's N slots, shared by whoever takes them: a third taker of two waits, a slot
    answered frees `period` later by the database's clock, a stranger cannot free it."""
    first, wait = hosts.take_rate_slot(store, "h.org", 2, 30.0, "run-a")
    second, _ = hosts.take_rate_slot(store, "h.org", 2, 30.0, "run-b")
    assert first is not None and second is not None and {first, second} == {0, 1}
    third, wait = hosts.take_rate_slot(store, "h.org", 2, 30.0, "run-c")
    assert third is None and 25.0 < wait <= 30.0  # held until answered (at most `hold`)
    hosts.release_rate_slot(store, "h.org", first, 5.0, "run-x")  # not its holder: nothing
    assert hosts.take_rate_slot(store, "h.org", 2, 30.0, "run-c")[1] > 25.0
    hosts.release_rate_slot(store, "h.org", first, 5.0, "run-a")  # answered: free in 5 s
    third, wait = hosts.take_rate_slot(store, "h.org", 2, 30.0, "run-c")
    assert third is None and 0.0 < wait <= 5.0
    assert hosts.take_rate_slot(store, "other.org", 1, 30.0, "run-c")[0] == 0  # per host


def test_heartbeats_and_completions_on_two_connections_never_deadlock(db: str) -> None:
    """A run's heartbeat and its workers' completions and failures run on different database
    connections (PostgreSQL: one per database thread). Each takes job rows and the run's row:
    taken in opposite orders, two of them wait on each other and PostgreSQL aborts one
    (a deadlock: a job failed for nothing, once in a while, in the fault matrix). Every
    transaction takes job rows before the run's row."""
    setup = open_store(db)
    runs.register_run(setup, RunInfo("run-a", "run", NOW, 5.0, "{}"))
    claimed = jobs.claim(setup, "run-a", len(KEYS), 1000, NOW)
    setup.close()
    errors: list[BaseException] = []
    done = threading.Event()

    def beat() -> None:
        store = open_store(db)
        try:
            while not done.is_set():
                runs.heartbeat(store, "run-a", [j.lease for j in claimed], 1000, NOW + 1)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            store.close()

    def work(share: list[Any]) -> None:
        store = open_store(db)
        try:
            for job in share:
                if int(job.id[-1]) % 2:
                    assert jobs.fail(
                        store, "run-a", job.lease, Failure("timeout", "", True), NOW + 2
                    )
                else:
                    assert jobs.complete(store, "run-a", job.lease, record(job.id), "x", NOW + 2)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            store.close()

    beaters = [threading.Thread(target=beat)]  # a run has one heartbeat
    workers = [threading.Thread(target=work, args=(claimed[i::3],)) for i in range(3)]
    for t in beaters + workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    done.set()
    for t in beaters:
        t.join(timeout=60)
    assert not errors, errors[:3]
    check = open_store(db)
    try:
        totals = reads.totals(check, NOW + 3)
        assert (totals.done, totals.failed) == (len(KEYS) // 2, len(KEYS) // 2)
    finally:
        check.close()
