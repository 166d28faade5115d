"""The extraction pool is sized by the CPUs rpa may use, not by the machine's: its affinity
(taskset, a container's cpuset) and its cgroup's CPU quota, read by real processes placed under
a real affinity mask and a real cgroup."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import child_cgroup

from rpa.machine import available_cpus

POOL_SIZE = "from rpa.config import Settings; print(Settings().extract_workers_resolved)"


def _pool_size(*prefix: str) -> int:
    result = subprocess.run(
        [*prefix, sys.executable, "-c", POOL_SIZE], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_the_pool_follows_the_affinity_mask() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("one CPU: no smaller mask to show")
    assert _pool_size() == available_cpus() == len(cpus)
    assert _pool_size("taskset", "-c", str(cpus[0])) == 1  # os.cpu_count() said len(cpus)


def test_the_pool_follows_the_cgroup_cpu_quota() -> None:
    with child_cgroup("cpu", "quota") as group:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("50000")  # half a CPU: one process
        inside = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]
        assert _pool_size(*inside) == 1
        (group / "cpu.cfs_quota_us").write_text("-1")  # no quota: the affinity decides
        assert _pool_size(*inside) == len(os.sched_getaffinity(0))


def test_an_explicit_extract_workers_wins() -> None:
    from rpa.config import Settings

    assert Settings(extract_workers=7).extract_workers_resolved == 7
