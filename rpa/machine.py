"""What this process may use of the machine: its cgroup folders, and the CPUs it may run on.

`available_cpus` is what sizes the extraction pool when --extract-workers is 0: the CPUs in this
process's affinity mask (a `taskset`, a container's cpuset), and no more than its cgroup's CPU
quota allows (`cpu.max` on cgroup v2, `cpu.cfs_quota_us` on v1, the tightest of the process's
cgroup and its ancestors, rounded up). `os.cpu_count()` counts the machine's CPUs: a 2-CPU
container on a 64-core node would start 64 extraction processes.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path

__all__ = ["CGROUP_ROOT", "PROC_CGROUP", "available_cpus", "cgroup_folder", "cpu_quota"]

#: where the kernel mounts the cgroup file systems
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: which cgroup this process is in, per hierarchy ("0::/path" for v2, "4:memory:/path" for v1)
PROC_CGROUP = Path("/proc/self/cgroup")


def cgroup_folder(
    controller: str = "", *, root: Path = CGROUP_ROOT, membership: Path = PROC_CGROUP
) -> Path | None:
    """This process's cgroup folder: of the v2 hierarchy (`controller` ""), or of a v1
    controller ("memory", "cpu"); None where there is none. `root` and `membership` are the
    kernel's files (a test passes stand-ins)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, where = line.split(":", 2)
        if controller == "" and controllers == "":
            return root / where.lstrip("/")
        if controller and controller in controllers.split(","):
            # a mount per controller ("cpu"), or one for a pair ("cpu,cpuacct")
            base = root / controllers
            if not base.exists():
                base = root / controller
            return base / where.lstrip("/")
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _up_to_root(folder: Path, root: Path) -> list[Path]:
    """`folder` and each of its ancestors up to `root`, which it lies under."""
    chain = [folder]
    while chain[-1] != root and root in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def cpu_quota(*, root: Path = CGROUP_ROOT, membership: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time the cgroup quota allows this process (1.5 = one and a half), the
    tightest over the process's cgroup and its ancestors; None when no quota binds. `root`
    and `membership` as for `cgroup_folder`."""
    quotas: list[float] = []
    v2 = cgroup_folder("", root=root, membership=membership)
    if v2 is not None:
        for folder in _up_to_root(v2, root):
            text = _read(folder / "cpu.max")
            if text and not text.startswith("max"):
                quota, _, period = text.partition(" ")
                quotas.append(int(quota) / int(period or "100000"))
    v1 = cgroup_folder("cpu", root=root, membership=membership)
    if v1 is not None:
        mount = next((p for p in v1.parents if p.parent == root), v1)
        for folder in _up_to_root(v1, mount):
            quota_us, period_us = (
                _read(folder / "cpu.cfs_quota_us"),
                _read(folder / "cpu.cfs_period_us"),
            )
            if quota_us and period_us and int(quota_us) > 0:
                quotas.append(int(quota_us) / int(period_us))
    return min(quotas) if quotas else None


@functools.cache
def available_cpus() -> int:
    """The CPUs this process may keep busy: its affinity, capped by its cgroup's CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)
