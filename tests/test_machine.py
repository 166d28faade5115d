"""The extraction pool is sized by the CPUs rpa may use, not by the machine's: its affinity
(taskset, a container's cpuset) and its cgroup's CPU quota, read by real processes placed under
a real affinity mask and a real cgroup."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@contextlib.contextmanager
def cpu_cgroup(name: str) -> Iterator[Path]:
    """A child of the v1 cpu cgroup this process is in (as root; what these machines have)."""
    parent = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, where = line.split(":", 2)
        if "cpu" in controllers.split(","):
            parent = Path("/sys/fs/cgroup") / controllers / where.lstrip("/")
    if parent is None or not parent.exists() or os.geteuid() != 0:
        pytest.skip("no v1 cpu cgroup to make a child of (needs root)")
    child = parent / f"rpa-{name}-{os.getpid()}"
    try:
        child.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot make a cpu cgroup: {exc}")
    try:
        yield child
    finally:
        for _ in range(50):  # its processes are gone; the kernel lets it go
            try:
                child.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_the_pool_follows_the_cgroup_cpu_quota() -> None:
    with cpu_cgroup("quota") as group:
        (group / "cpu.cfs_period_us").write_text("100000")
        (group / "cpu.cfs_quota_us").write_text("50000")  # half a CPU: one process
        inside = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "sh"]
        assert _pool_size(*inside) == 1
        (group / "cpu.cfs_quota_us").write_text("-1")  # no quota: the affinity decides
        assert _pool_size(*inside) == len(os.sched_getaffinity(0))


def test_an_explicit_extract_workers_wins() -> None:
    from rpa.config import Settings

    assert Settings(extract_workers=7).extract_workers_resolved == 7
