"""The extraction processes' fork server boots while the main process prepares the queue
(rpa.extract.worker.warm; issue 20: the pool never idles at the start). Real processes: the
server is looked at through /proc, not through multiprocessing's private state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rpa.extract.worker import context, warm

pytestmark = pytest.mark.skipif(
    context().get_start_method() != "forkserver", reason="no fork server on this platform"
)


def _children() -> dict[int, str]:
    me = os.getpid()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("PPid:"))
        if ppid == me:
            found[int(entry.name)] = cmdline
    return found


def test_warm_boots_the_fork_server_once() -> None:
    thread = warm()
    assert thread is not None
    thread.join(60)
    assert not thread.is_alive()
    servers = [pid for pid, cmd in _children().items() if "multiprocessing.forkserver" in cmd]
    assert len(servers) == 1, _children()
    again = warm()  # a second call finds it running: still one server
    assert again is not None
    again.join(60)
    assert [p for p, c in _children().items() if "multiprocessing.forkserver" in c] == servers
