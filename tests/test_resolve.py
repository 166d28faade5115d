"""A name nobody resolves costs a request its connect timeout, not the resolver's (issue 18).

Offline against arXiv a run took 33 s to say arXiv was unreachable, each attempt 12-24 s
although the connect timeout is 10 s: aiohttp's `sock_connect` bounds the socket's connect
only, not glibc's getaddrinfo before it. Here the real resolver asks a real DNS server that
never answers: a UDP socket on 127.0.0.1:53 that reads nothing, named by /etc/resolv.conf
(`timeout:20 attempts:1`: glibc waits 20 s a query), in a network and mount namespace of
the test's own (`unshare`: no route leaves the machine, and the machine's resolv.conf is
untouched; skipped where `unshare` cannot run). Both HTTP stacks, built by the run's own
`make_clients`, must give up after their 1 s connect timeout, as a connection error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOLVER_WAIT = 20  # seconds glibc waits for each answer (resolv.conf's `timeout`)
CONNECT_TIMEOUT = 1.0

# Runs inside the namespaces: the silent DNS server, then one request through each stack.
# It prints its figures and leaves with os._exit: a lookup's thread cannot be stopped, and
# asyncio.run's end would wait RESOLVER_WAIT s for it.
SCRIPT = f"""
import asyncio, dataclasses, json, os, socket, sys, time
import httpx
from rpa.config import Settings
from rpa.run.clients import make_clients

silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
silent.bind(("127.0.0.1", 53))  # bound, never read: no answer, and no ICMP refusal either


async def one(stack):
    settings = Settings(connect_timeout={CONNECT_TIMEOUT}, read_timeout=60.0, http_stack=stack)
    client = make_clients(settings)[0]
    start = time.monotonic()
    try:
        await client.get("http://pdfs.rpa-test.example/pdf/x")
        outcome = "answered"
    except httpx.HTTPError as exc:
        outcome = f"{{type(exc).__name__}}: {{exc}}"
    return {{"seconds": time.monotonic() - start, "outcome": outcome}}


async def main():
    got = {{stack: await one(stack) for stack in ("aiohttp", "httpx")}}
    print(json.dumps(got), flush=True)
    os._exit(0)


asyncio.run(main())
"""


def _namespaces() -> list[str]:
    """The `unshare` command line that gives a fresh network and mount namespace (a user
    namespace too when not root); the test is skipped when there is none."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare and ip (util-linux, iproute2)")
    command = ["unshare", "--net", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        command.insert(1, "--map-root-user")
    probe = subprocess.run([*command, "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make namespaces here: {probe.stderr.decode(errors='replace')}")
    return command


@pytest.mark.timeout(120)
def test_a_resolver_that_never_answers_costs_the_connect_timeout_not_its_own(
    tmp_path: Path,
) -> None:
    command = _namespaces()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(f"nameserver 127.0.0.1\noptions timeout:{RESOLVER_WAIT} attempts:1\n")
    script = tmp_path / "ask.py"
    script.write_text(SCRIPT)
    inside = (
        f"ip link set lo up && mount --bind {resolv} /etc/resolv.conf && "
        f"exec {sys.executable} {script}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*command, "sh", "-c", inside], capture_output=True, text=True, env=env, timeout=100
    )
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    for stack, figures in got.items():
        # a connection error ("cannot reach the host"), not a read timeout nor an answer
        assert figures["outcome"].startswith(("ConnectError", "ConnectTimeout")), (stack, got)
        assert figures["seconds"] < RESOLVER_WAIT / 2, (stack, got)  # not the resolver's 20 s
