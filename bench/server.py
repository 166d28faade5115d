"""The loopback mirror the benchmark downloads from: nginx, else rpa's own Python mirror.

nginx (Debian's `nginx-light`) is installed by the benchmark itself when missing and it can
(`apt-get install -y nginx-light`, as root). It runs in the foreground in its own process
group, bound to 127.0.0.1 only, one worker, sendfile on, access log off, serving DIR/<stem>.pdf
at /pdf/<stem>: the same URL scheme as `python -m rpa.testing.mirror DIR`, the fallback. Nothing is
ever requested from any other address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["Server", "ensure_nginx"]

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        location ~ ^/pdf/([a-z0-9][a-z0-9._-]*)$ {{
            default_type application/pdf;
            alias {root}/$1.pdf;
        }}
        location / {{ return 404; }}
    }}
}}
"""


def _nginx_path() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def ensure_nginx(log: list[str]) -> str | None:
    """The nginx binary, installing Debian's nginx-light if needed and possible."""
    found = _nginx_path()
    if found is not None:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        log.append("nginx not installed and cannot be installed here (needs root + apt-get)")
        return None
    print("bench: installing nginx-light (apt-get) for the loopback mirror", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "nginx-light"]):
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log.append(f"apt-get failed: {done.stderr.strip()[-300:]}")
            return None
    # The package starts a system nginx on port 80 where an init system exists; ours is
    # separate (own config, own port), so leave that one alone.
    return _nginx_path()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`with Server(dir, kind) as s:` serves dir/*.pdf at s.url_template until the block ends."""

    def __init__(self, root: Path, kind: str = "auto", nice: int = 0) -> None:
        self.root = root
        self.nice = nice  # niceness increment of the server, like the measured runs
        self.requested = kind
        self.kind = ""
        self.notes: list[str] = []
        self.url_template = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="rpa-bench-srv-"))

    def __enter__(self) -> Server:
        nginx = ensure_nginx(self.notes) if self.requested in ("auto", "nginx") else None
        if nginx is not None:
            self._start_nginx(nginx)
        elif self.requested == "nginx":
            raise SystemExit(f"bench: nginx requested but unavailable: {self.notes}")
        else:
            self._start_python()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start_nginx(self, nginx: str) -> None:
        port = _free_port()
        conf = self._tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=self._tmp, port=port, root=self.root))
        self._proc = subprocess.Popen(
            [nginx, "-e", str(self._tmp / "error.log"), "-p", str(self._tmp), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=self._renice,
        )
        self.kind = f"nginx {self._nginx_version(nginx)} (1 worker, sendfile)"
        self.url_template = f"http://127.0.0.1:{port}/pdf/{{id}}"
        self._wait_ready()

    def _renice(self) -> None:
        if self.nice:
            os.nice(self.nice)

    @staticmethod
    def _nginx_version(nginx: str) -> str:
        done = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        return done.stderr.strip().split("/")[-1]

    def _start_python(self) -> None:
        ready = self._tmp / "ready"
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rpa.testing.mirror",
                str(self.root),
                "--ready-file",
                str(ready),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=self._renice,
        )
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: the rpa.testing.mirror server did not start")
            time.sleep(0.05)
        self.kind = "python -m rpa.testing.mirror (ThreadingHTTPServer)"
        self.url_template = ready.read_text().strip()
        self._wait_ready()

    def _wait_ready(self) -> None:
        first = next(iter(sorted(self.root.glob("*.pdf"))), None)
        if first is None:
            raise SystemExit(f"bench: nothing to serve in {self.root}")
        url = self.url_template.replace("{id}", first.stem)
        deadline = time.monotonic() + 30
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                raise SystemExit(f"bench: the mirror exited at start: {err[-500:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: the mirror does not serve {url}")
            time.sleep(0.1)

    def pids(self) -> list[int]:
        """The server's processes (nginx master and worker), for its CPU time."""
        if self._proc is None:
            return []
        pids = [self._proc.pid]
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
            pids += [int(p) for p in children.read_text().split()]
        return pids

    def cpu_seconds(self) -> float:
        """CPU seconds the server has used so far (master + workers, threads included)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self.pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)  # its own session: only its processes
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        self._proc = None
        shutil.rmtree(self._tmp, ignore_errors=True)
