"""The queue's contract, run against every backend (huey's pattern): leasing, fencing,
reclaim, retries, counts, the queue's settings, `retry_failed`, status.

Two claimers never hold one job; a worker whose lease expired or was reclaimed cannot write;
dead runs' leases are reclaimed; stage counts stay exact through every transition.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import queue_backends

from rpa.queue import QueueStore, open_store
from rpa.queue.model import Downloaded, Extracted, Failure, RunInfo

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
    assert store.totals(NOW).total == 201
    assert [j.id for j in store.claim("r", 3, 60, NOW)] == KEYS[:3]


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
        barrier.wait()
        while batch := store.claim(name, 3, 60, NOW):
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
    assert sum(1 for got in claimed.values() if got) >= 2


def test_fence_rejects_a_worker_whose_lease_was_reclaimed(store: QueueStore) -> None:
    [old] = store.claim("run-a", 1, 10, NOW)
    # run-a goes quiet; its lease expires and is reclaimed, then run-b claims the job
    assert store.reclaim_stale(NOW + 11).expired_leases == 1
    [new] = store.claim("run-b", 1, 10, NOW + 11)
    assert new.id == old.id and new.token == old.token + 1
    # the old holder's late writes match nothing
    assert not store.checkpoint_download("run-a", old.lease, downloaded(), NOW + 12)
    assert not store.complete("run-a", old.lease, record(old.id), "x", NOW + 12)
    assert not store.fail("run-a", old.lease, Failure("timeout", "", True), NOW + 12)
    # the new holder's do
    assert store.checkpoint_download("run-b", new.lease, downloaded(), NOW + 12)
    assert store.complete("run-b", new.lease, record(new.id), "x", NOW + 12)
    assert stage_of(store, old.id) == ("done", None)
    assert store.results_page("", 10)[0][0] == old.id


def test_expired_lease_cannot_write_even_if_nobody_reclaimed_it(store: QueueStore) -> None:
    [job] = store.claim("run-a", 1, 10, NOW)
    assert not store.checkpoint_download("run-a", job.lease, downloaded(), NOW + 10.5)


def test_heartbeat_renews_the_leases_it_holds_and_reports_lost_ones(store: QueueStore) -> None:
    store.register_run(RunInfo("run-a", "run", NOW, 5.0, "{}"))
    a, b = store.claim("run-a", 2, 10, NOW)
    store.reclaim_stale(NOW + 11)  # both expire
    store.claim("run-b", 1, 10, NOW + 11)  # a is claimed again, by run-b (FIFO)
    assert store.heartbeat("run-a", [a.lease, b.lease], 10, NOW + 11) == {a.id, b.id}
    c, d = store.claim("run-c", 2, 10, NOW + 20)
    assert store.heartbeat("run-c", [c.lease, d.lease], 10, NOW + 25) == set()
    # renewed: still writable after the original expiry
    assert store.checkpoint_download("run-c", c.lease, downloaded(), NOW + 33)


def test_dead_run_leases_are_reclaimed_at_once(store: QueueStore) -> None:
    # a run on this host whose process is gone: pid 2**22+1 is above Linux's pid_max default
    store.register_run(RunInfo("dead-run", "run", NOW, 5.0, "{}", pid=4194305))
    store.claim("dead-run", 5, 3600, NOW)
    assert "dead-run" in store.dead_runs(NOW + 1)
    result = store.reclaim_stale(NOW + 1)
    assert (result.dead_runs, result.dead_leases, result.expired_leases) == (1, 5, 0)
    assert store.status(NOW + 1)["runs"][0]["status"] == "crashed"
    assert len(store.claim("next", 300, 60, NOW + 1)) == 200


def test_a_run_is_dead_after_three_of_its_own_missed_heartbeats(store: QueueStore) -> None:
    """One definition of a dead run (model.dead_after), from each run's own interval."""
    store.register_run(RunInfo("slow", "run", NOW, 60.0, "{}", host="elsewhere"))
    store.register_run(RunInfo("fast", "run", NOW, 1.0, "{}", host="elsewhere"))
    assert store.dead_runs(NOW + 7.9) == []
    assert store.dead_runs(NOW + 8.1) == ["fast"]  # 3 x 1 s + 5 s
    assert store.live_runs(NOW + 9) == {"slow"}
    assert sorted(store.dead_runs(NOW + 185.1)) == ["fast", "slow"]  # 3 x 60 s + 5 s
    status = store.status(NOW + 9)
    assert {r["id"]: r["status"] for r in status["runs"]} == {"slow": "running", "fast": "dead"}


def test_retry_is_not_claimable_before_its_time_and_counts_attempts(store: QueueStore) -> None:
    [job] = store.claim("r", 1, 60, NOW)
    assert store.fail("r", job.lease, Failure("timeout", "slow", False, NOW + 30), NOW)
    assert job.id not in {j.id for j in store.claim("r", 500, 60, NOW + 29)}
    [again] = store.claim("r", 1, 60, NOW + 31)
    assert again.id == job.id and again.attempts == 1


def test_failed_is_final(store: QueueStore) -> None:
    [job] = store.claim("r", 1, 60, NOW)
    store.fail("r", job.lease, Failure("not_pdf", "html", True), NOW)
    row = store.sql.one("SELECT stage, error_kind FROM jobs WHERE id = ?", (job.id,))
    assert row is not None and (row["stage"], row["error_kind"]) == ("failed", "not_pdf")
    assert job.id not in {j.id for j in store.claim("r", 500, 60, NOW + 1e6)}


def _counts(store: QueueStore) -> tuple[dict[str, int], dict[str, int]]:
    kept = {r["stage"]: int(r["n"]) for r in store.sql.rows(
        "SELECT stage, sum(n) AS n FROM stage_counts GROUP BY stage") if r["n"]}  # fmt: skip
    real = {r["stage"]: int(r["n"]) for r in store.sql.rows(
        "SELECT stage, count(*) AS n FROM jobs GROUP BY stage")}  # fmt: skip
    return kept, real


def test_stage_counts_stay_exact_through_every_transition(store: QueueStore) -> None:
    assert _counts(store) == ({"queued": 200}, {"queued": 200})
    a, b, c, d = store.claim("r", 4, 60, NOW)
    assert store.checkpoint_download("r", a.lease, downloaded(), NOW)
    assert store.complete("r", b.lease, record(b.id), "x.json", NOW)
    assert store.fail("r", c.lease, Failure("k", "m", True), NOW)
    assert store.checkpoint_extract("r", d.lease, Extracted("/t", {"ok": True}, 1.0), NOW)
    # a fenced-off write changes nothing, counts included
    assert not store.complete("r", b.lease, record(b.id), "x.json", NOW)
    assert store.enqueue(["2301.00001", "2302.00001"], NOW) == 1
    kept, real = _counts(store)
    assert kept == real == {"queued": 197, "downloaded": 1, "extracted": 1, "done": 1, "failed": 1}
    assert store.retry_failed(None, NOW) == {"k": 1}
    kept, real = _counts(store)
    assert kept == real == {"queued": 198, "downloaded": 1, "extracted": 1, "done": 1}


def test_retry_failed_keeps_checkpoints_and_gives_fresh_attempts(store: QueueStore) -> None:
    a, b, c = store.claim("r", 3, 60, NOW)
    # a failed downloading, b extracting (its PDF is checkpointed), c crashed a process twice
    store.fail("r", a.lease, Failure("connection", "refused", True), NOW)
    store.checkpoint_download("r", b.lease, downloaded(), NOW)
    store.fail("r", b.lease, Failure("invalid_pdf", "broken", True), NOW)
    store.checkpoint_download("r", c.lease, downloaded(), NOW)
    store.fail("r", c.lease, Failure("poison", "killed 2", True, crashed=True), NOW)
    assert store.retry_failed(["invalid_pdf", "poison"], NOW + 1) == {"invalid_pdf": 1, "poison": 1}
    assert stage_of(store, a.id) == ("failed", None)  # not of those kinds
    again = {j.id: j for j in store.claim("r2", 500, 60, NOW + 2)}
    assert again[b.id].stage == "downloaded" and again[b.id].pdf_path == "/x.pdf"
    assert (again[c.id].attempts, again[c.id].crashes) == (0, 0)
    assert a.id not in again
    assert store.retry_failed(None, NOW + 3) == {"connection": 1}
    assert store.retry_failed(None, NOW + 3) == {}
    [back] = store.claim("r3", 1, 60, NOW + 4)
    assert (back.id, back.stage) == (a.id, "queued")


def test_queue_settings_are_stored_and_changes_recorded(store: QueueStore) -> None:
    assert store.queue_settings() == {}
    store.store_queue_settings({"out": "/data/a", "max_pdf_mb": 100.0}, "run-1", NOW)
    store.store_queue_settings({"out": "/data/a"}, "run-2", NOW + 1)  # unchanged: not a change
    assert store.settings_changes() == []
    store.store_queue_settings({"out": "/data/b"}, "run-3", NOW + 2)
    assert store.queue_settings() == {"max_pdf_mb": 100.0, "out": "/data/b"}
    [change] = store.settings_changes()
    assert (change["key"], change["old_value"], change["new_value"], change["run_id"]) == (
        "out",
        '"/data/a"',
        '"/data/b"',
        "run-3",
    )
    assert store.status(NOW)["settings"]["out"] == "/data/b"


def test_hosts_cooldown_only_grows_and_breaker_opens_and_closes(store: QueueStore) -> None:
    store.set_cooldown("h.org", NOW + 60, "429", NOW)
    store.set_cooldown("h.org", NOW + 10, "429 again", NOW)  # an earlier end does not shorten it
    state = store.host_state("h.org")
    assert state is not None and state.cooldown_until == NOW + 60 and not state.breaker_open
    store.open_breaker("h.org", "403", NOW)
    state = store.host_state("h.org")
    assert state is not None and state.breaker_open and state.reason == "403"
    store.close_breaker("h.org", NOW)
    state = store.host_state("h.org")
    assert state is not None and not state.breaker_open
    assert store.host_state("other.org") is None


def test_next_due_and_end_of_run_totals(store: QueueStore) -> None:
    store.register_run(RunInfo("r", "run", NOW, 5.0, "{}"))
    jobs = store.claim("r", 200, 60, NOW)
    assert store.next_due(NOW, ("queued",)) is None  # everything is leased
    store.fail("r", jobs[0].lease, Failure("timeout", "", False, NOW + 42), NOW)
    assert store.next_due(NOW, ("queued",)) == pytest.approx(42)
    store.register_run(RunInfo("other", "run", NOW, 5.0, "{}"))
    [held] = store.claim("other", 1, 60, NOW + 43)
    store.end_run("r", "interrupted", NOW + 44)  # gives r's leases back
    totals, elsewhere = store.end_of_run_totals("r", NOW + 44)
    assert (totals.in_progress, totals.queued, elsewhere) == (1, 199, 1)
    assert held.id == jobs[0].id


def test_rate_slots_are_one_budget_for_every_process(store: QueueStore) -> None:
    """A host's N slots, shared by whoever takes them: a third taker of two waits, a slot
    answered frees `period` later by the database's clock, a stranger cannot free it."""
    first, wait = store.take_rate_slot("h.org", 2, 30.0, "run-a")
    second, _ = store.take_rate_slot("h.org", 2, 30.0, "run-b")
    assert first is not None and second is not None and {first, second} == {0, 1}
    third, wait = store.take_rate_slot("h.org", 2, 30.0, "run-c")
    assert third is None and 25.0 < wait <= 30.0  # held until answered (at most `hold`)
    store.release_rate_slot("h.org", first, 5.0, "run-x")  # not its holder: nothing
    assert store.take_rate_slot("h.org", 2, 30.0, "run-c")[1] > 25.0
    store.release_rate_slot("h.org", first, 5.0, "run-a")  # answered: free in 5 s
    third, wait = store.take_rate_slot("h.org", 2, 30.0, "run-c")
    assert third is None and 0.0 < wait <= 5.0
    assert store.take_rate_slot("other.org", 1, 30.0, "run-c")[0] == 0  # per host


def test_heartbeats_and_completions_on_two_connections_never_deadlock(db: str) -> None:
    """A run's heartbeat and its workers' completions and failures run on different database
    connections (PostgreSQL: one per database thread). Each takes job rows and the run's row:
    taken in opposite orders, two of them wait on each other and PostgreSQL aborts one
    (a deadlock: a job failed for nothing, once in a while, in the fault matrix). Every
    transaction takes job rows before the run's row."""
    setup = open_store(db)
    setup.register_run(RunInfo("run-a", "run", NOW, 5.0, "{}"))
    jobs = setup.claim("run-a", len(KEYS), 1000, NOW)
    setup.close()
    errors: list[BaseException] = []
    done = threading.Event()

    def beat() -> None:
        store = open_store(db)
        try:
            while not done.is_set():
                store.heartbeat("run-a", [j.lease for j in jobs], 1000, NOW + 1)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            store.close()

    def work(share: list[Any]) -> None:
        store = open_store(db)
        try:
            for job in share:
                if int(job.id[-1]) % 2:
                    assert store.fail("run-a", job.lease, Failure("timeout", "", True), NOW + 2)
                else:
                    assert store.complete("run-a", job.lease, record(job.id), "x", NOW + 2)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)
        finally:
            store.close()

    beaters = [threading.Thread(target=beat)]  # a run has one heartbeat
    workers = [threading.Thread(target=work, args=(jobs[i::3],)) for i in range(3)]
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
        totals = check.totals(NOW + 3)
        assert (totals.done, totals.failed) == (len(KEYS) // 2, len(KEYS) // 2)
    finally:
        check.close()
