"""The limits rpa sets itself against its world (issue 18), shown on real parts:

- every PostgreSQL connection of a run's database threads has TCP keepalives, a
  `statement_timeout` and a `lock_timeout` (read from the server and from the socket itself),
  and a statement cancelled by `statement_timeout` is waited out and tried again (the
  `lock_timeout` case, a whole run against `LOCK TABLE jobs` held 20 s, is
  tests/test_db_outage.py's; the 25 s stall under the default lock_timeout, test_liveness's);
- a whole `rpa run` confined to one CPU, by its affinity mask and by a cgroup's CPU quota,
  runs one extraction process and says so in its JSON progress lines;
- the cgroup v2 `cpu.max` reader, on stand-ins for the kernel's files (this VM has cgroup v1:
  tests/test_machine.py reads real v1 cgroups).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli, child_cgroup, clean_env, sample_pdfs, write_ids

import rpa.queue.postgres as pg
from rpa.machine import cpu_quota
from rpa.queue import QueueStore, open_store
from rpa.queue.aio import AsyncQueue
from rpa.queue.postgres import KEEPALIVES, STATEMENT_TIMEOUT, PgSql
from rpa.testing.mirror import Fault, Mirror

_SETTINGS = (
    "SELECT name, setting FROM pg_settings WHERE name IN ('statement_timeout', 'lock_timeout')"
)


def _session(store: QueueStore, both: threading.Barrier) -> dict[str, int]:
    """This database thread's connection as the server and the kernel see it. `both` holds
    each thread until the other has come, so that each thread answers once."""
    both.wait(timeout=30)
    assert isinstance(store.sql, PgSql)
    conn = store.sql.conn
    found = {r["name"]: int(r["setting"]) for r in conn.execute(_SETTINGS).fetchall()}
    found["backend"] = conn.info.backend_pid
    sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    with sock:
        assert sock.family == socket.AF_INET  # TCP: keepalives do not apply to a Unix socket
        found["keepalive"] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        found["idle"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        found["interval"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
        found["count"] = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
    return found


def test_every_database_thread_has_keepalives_and_statement_and_lock_timeouts(
    postgres_db: Callable[[], str],
) -> None:
    """A run's AsyncQueue (as Runner builds it, lock_timeout from --db-lock-timeout) on the
    suite's real server: each thread's connection has statement_timeout 300 s and the given
    lock_timeout, as the server reports them (pg_settings), and TCP keepalives (30 s idle,
    10 s between probes, 3 probes) on its socket, as the kernel reports them. Without them a
    server that vanished silently left a call waiting on the kernel's 2 hours."""
    url = postgres_db()

    async def scenario() -> list[dict[str, int]]:
        queue = AsyncQueue(url, connections=2, lock_timeout=2.5)
        await queue.open()
        try:
            both = threading.Barrier(2)
            return await asyncio.gather(*(queue.run(_session, both) for _ in range(2)))
        finally:
            await queue.close()

    sessions = asyncio.run(scenario())
    assert len({s["backend"] for s in sessions}) == 2  # two threads, two connections
    for s in sessions:
        assert s["statement_timeout"] == STATEMENT_TIMEOUT * 1000 == 300_000, s
        assert s["lock_timeout"] == 2500, s
        assert s["keepalive"] != 0, s
        assert (s["idle"], s["interval"], s["count"]) == (30, 10, 3), s
        assert KEEPALIVES["keepalives_idle"] == s["idle"]


def test_a_statement_cancelled_by_statement_timeout_is_waited_out_and_tried_again(
    postgres_db: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session holds `LOCK TABLE jobs`; rpa's statement waits for it, past its
    statement_timeout, under a lock_timeout that would not fire: the server cancels it
    (57014), and the call is tried again on a new connection until the lock is gone; it then
    returns its answer, no exception. statement_timeout is a constant (300 s), not a knob:
    the test sets it to 1 s in this process, which is where AsyncQueue's threads connect."""
    monkeypatch.setattr(pg, "STATEMENT_TIMEOUT", 1)
    url = postgres_db()
    open_store(url).close()
    locker = psycopg.connect(url)  # a transaction from its first statement to its commit

    async def scenario() -> tuple[int, str, float]:
        queue = AsyncQueue(url, connections=1, lock_timeout=120)
        await queue.open(create=False)
        try:
            await asyncio.to_thread(locker.execute, "LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            start = time.monotonic()
            call = asyncio.create_task(queue.run(QueueStore.enqueue, ["2301.00001"], 0.0))
            while "statement timeout" not in (queue.outage.reason or ""):
                assert not call.done(), call  # it neither returned nor raised meanwhile
                await asyncio.sleep(0.05)
            reason = queue.outage.reason or ""
            await asyncio.to_thread(locker.commit)
            added = await call
            return added, reason, time.monotonic() - start
        finally:
            await queue.close()

    try:
        added, reason, took = asyncio.run(scenario())
    finally:
        locker.close()
    assert added == 1
    assert "canceling statement due to statement timeout (57014)" in reason, reason
    assert took >= 1.0
    with psycopg.connect(url) as check:
        assert check.execute("SELECT count(*) FROM jobs").fetchone() == (1,)


# ---- the pool's size: a whole run confined to one CPU -----------------------------------------


def _run_confined(tmp_path: Path, *prefix: str) -> list[dict[str, Any]]:
    """A whole `rpa run` of 7 papers at default settings, started under `prefix` (what confines
    it), with JSON lines on stdout; one paper's body stalls 6 s, so that the run outlives its
    first progress line (one every 5 s). Its JSON lines."""
    pdfs = sample_pdfs()
    files = {f"p{i}": pdfs[i % len(pdfs)] for i in range(7)}
    with Mirror(files, faults={"p0": Fault.slow_body(6.0)}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        result = subprocess.run(
            [*prefix, *cli.args("run", str(ids), *cli.knobs(log_format="json"))],
            cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=90,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert cli.count("stage = 'done'") == len(files)
    return [json.loads(line) for line in result.stdout.splitlines()]


def _pool_said(lines: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """(the pool's size, the extract gate's capacity) in each progress line."""
    progress = [line for line in lines if line["event"] == "progress"]
    assert progress, "no progress line: the run was too short to show its pool"
    assert all(line["extract_procs_alive"] <= line["extract_procs"] for line in progress)
    return {(line["extract_procs"], line["gates"]["extract"]["capacity"]) for line in progress}


def test_a_whole_run_pinned_to_one_cpu_runs_one_extraction_process(tmp_path: Path) -> None:
    """`taskset -c N rpa run ...` on a machine of more CPUs: one extraction process, said in
    the progress lines (`extract_procs`, and the extract gate's capacity). Before, the pool
    came from os.cpu_count(), which ignores the mask."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("this process has one CPU: pinning to one shows nothing")
    assert _pool_said(_run_confined(tmp_path, "taskset", "-c", str(cpus[-1]))) == {(1, 1)}


def test_a_whole_run_in_a_one_cpu_cgroup_runs_one_extraction_process(tmp_path: Path) -> None:
    """A v1 cpu cgroup with a quota of one CPU (cfs_quota_us 100000 per 100000), the run's
    process put in it before rpa starts: one extraction process, though its affinity has
    every CPU. Skipped where no cgroup can be made (not root, no v1 cpu controller)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this process has one CPU: a one-CPU quota shows nothing")
    with child_cgroup("cpu", "one-cpu") as group:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("100000")
        inside = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]
        assert _pool_said(_run_confined(tmp_path, *inside)) == {(1, 1)}


def _cgroup_v2(tmp_path: Path, cpu_max: dict[str, str]) -> dict[str, Path]:
    """Stand-ins for the kernel's files of cgroup v2 (this VM mounts v1): a hierarchy under
    tmp_path/"cgroup" with `cpu.max` in the folders named in `cpu_max`, and a
    /proc/self/cgroup placing the process in a/b/c."""
    root = tmp_path / "cgroup"
    for folder, text in cpu_max.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "cpu.max").write_text(text + "\n")
    (root / "a" / "b" / "c").mkdir(parents=True, exist_ok=True)
    membership = tmp_path / "proc-self-cgroup"
    membership.write_text("0::/a/b/c\n")
    return {"root": root, "membership": membership}


@pytest.mark.parametrize(
    ("cpu_max", "quota"),
    [
        ({"a/b/c": "max 100000"}, None),  # no quota anywhere
        ({"a/b/c": "150000 100000"}, 1.5),  # the process's own cgroup
        ({"a": "50000 100000", "a/b/c": "max 100000"}, 0.5),  # an ancestor's binds
        ({"a": "400000 100000", "a/b": "200000 50000"}, 4.0),  # the tightest of the chain
        ({"a/b": "300000"}, 3.0),  # no period written: the kernel's default 100000
    ],
)
def test_the_cgroup_v2_cpu_max_is_read_up_the_tree(
    tmp_path: Path, cpu_max: dict[str, str], quota: float | None
) -> None:
    assert cpu_quota(**_cgroup_v2(tmp_path, cpu_max)) == quota
