"""rpa.testing.mirror: a real loopback server, checked with the real httpx client."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rpa.errors import ConfigError
from rpa.testing.mirror import DENIAL_PAGE, Fault, Mirror, main, mapping_from_dir

SAMPLES = Path(__file__).resolve().parent.parent / "rpa" / "samples"
PDFS = sorted(SAMPLES.glob("*.pdf"))
NEW, OLD, EXT = "2301.00001", "hep-th/9901001v2", "demo-1"


@pytest.fixture
def files() -> dict[str, Path]:
    assert len(PDFS) >= 3
    return {NEW: PDFS[0], OLD: PDFS[1], EXT: PDFS[2]}


@pytest.fixture
def mirror(files: dict[str, Path]) -> Iterator[Mirror]:
    with Mirror(files) as m:
        yield m


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def url(mirror: Mirror, url_id: str) -> str:
    return mirror.url_template.replace("{id}", url_id)


def test_serves_the_exact_bytes_with_keep_alive(
    mirror: Mirror, client: httpx.Client, files: dict[str, Path]
) -> None:
    assert mirror.url_template == f"http://127.0.0.1:{mirror.port}/pdf/{{id}}"
    for url_id, path in files.items():
        response = client.get(url(mirror, url_id))
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        assert response.headers["content-type"] == "application/pdf"
        assert int(response.headers["content-length"]) == path.stat().st_size
        assert response.content == path.read_bytes()
        assert response.headers.get("connection") != "close"
    client.get(url(mirror, NEW))
    assert (mirror.requests(NEW), mirror.requests(OLD), mirror.requests(EXT)) == (2, 1, 1)
    assert mirror.total_requests == 4
    times = mirror.request_times()
    assert len(times) == 4 and times == sorted(times)
    assert len(mirror.request_times(NEW)) == 2


def test_head(mirror: Mirror, client: httpx.Client, files: dict[str, Path]) -> None:
    response = client.head(url(mirror, OLD))
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == files[OLD].stat().st_size
    assert response.content == b""
    assert client.head(url(mirror, "nope")).status_code == 404
    assert mirror.requests(OLD) == 1


def test_404_and_stats(mirror: Mirror, client: httpx.Client) -> None:
    missing = client.get(url(mirror, "2301.99999"))
    assert missing.status_code == 404
    assert "2301.99999" in missing.text
    assert client.get(f"http://127.0.0.1:{mirror.port}/elsewhere").status_code == 404
    client.get(url(mirror, NEW))
    stats = client.get(f"http://127.0.0.1:{mirror.port}/_stats")
    assert stats.headers["content-type"] == "application/json"
    # /_stats and paths outside /pdf/ are not counted as paper requests.
    assert stats.json() == {"total": 2, "by_id": {"2301.99999": 1, NEW: 1}}
    assert stats.json() == mirror.stats()


async def test_counts_are_exact_under_concurrency(mirror: Mirror) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        responses = await asyncio.gather(
            *(client.get(url(mirror, [NEW, OLD][i % 2])) for i in range(40))
        )
    assert all(r.status_code == 200 for r in responses)
    assert (mirror.requests(NEW), mirror.requests(OLD), mirror.total_requests) == (20, 20, 40)


@pytest.mark.parametrize(
    ("code", "retry_after"),
    [(429, "7"), (503, "Wed, 21 Oct 2015 07:28:00 GMT"), (500, None), (404, None), (410, None)],
)
def test_status_fault(
    mirror: Mirror, client: httpx.Client, code: int, retry_after: str | None
) -> None:
    mirror.set_fault(NEW, Fault.status(code, retry_after=retry_after, body=b"go away"))
    for _ in range(2):  # times=None: every request
        response = client.get(url(mirror, NEW))
        assert response.status_code == code
        assert response.headers.get("retry-after") == retry_after
        assert response.content == b"go away"


def test_fault_times_then_the_real_file(
    mirror: Mirror, client: httpx.Client, files: dict[str, Path]
) -> None:
    mirror.set_fault(NEW, Fault.status(503, retry_after="1", times=2))
    assert [client.get(url(mirror, NEW)).status_code for _ in range(2)] == [503, 503]
    final = client.get(url(mirror, NEW))
    assert final.status_code == 200 and final.content == files[NEW].read_bytes()
    assert mirror.requests(NEW) == 3


def test_faults_given_at_start_and_cleared(files: dict[str, Path], client: httpx.Client) -> None:
    with Mirror(files, faults={EXT: Fault.deny_403()}) as m:
        assert client.get(url(m, EXT)).status_code == 403
        m.set_fault(EXT, None)
        assert client.get(url(m, EXT)).content == files[EXT].read_bytes()


def test_reset_mid_body(mirror: Mirror, client: httpx.Client, files: dict[str, Path]) -> None:
    mirror.set_fault(NEW, Fault.reset_mid_body(times=1))
    received = 0
    with (
        pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)),
        client.stream("GET", url(mirror, NEW)) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert received < files[NEW].stat().st_size
    # The next attempt gets the whole file.
    assert client.get(url(mirror, NEW)).content == files[NEW].read_bytes()


def test_lying_length(mirror: Mirror, client: httpx.Client, files: dict[str, Path]) -> None:
    mirror.set_fault(OLD, Fault.lying_length())
    received = 0
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("GET", url(mirror, OLD)) as response,
    ):
        assert int(response.headers["content-length"]) > files[OLD].stat().st_size
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert received == files[OLD].stat().st_size


def test_slow_body_times_out_and_close_is_prompt(files: dict[str, Path]) -> None:
    m = Mirror(files, faults={NEW: Fault.slow_body(60)}).start()
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=0.3)) as client,
            pytest.raises(httpx.ReadTimeout),
        ):
            client.get(url(m, NEW))
        # A second, idle keep-alive connection must not hold close() up either.
        with httpx.Client(timeout=10) as idle:
            assert idle.get(url(m, OLD)).status_code == 200
            started = time.monotonic()
            m.close()
            # The handler is still stalled (60 s) and the idle one waits for a request.
            assert time.monotonic() - started < 5
    finally:
        m.close()


def test_slow_body_completes_when_the_client_waits(mirror: Mirror, files: dict[str, Path]) -> None:
    mirror.set_fault(NEW, Fault.slow_body(0.3))
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        response = client.get(url(mirror, NEW))
    assert response.content == files[NEW].read_bytes()
    assert time.monotonic() - started >= 0.3


def test_html_200(mirror: Mirror, client: httpx.Client) -> None:
    mirror.set_fault(EXT, Fault.html_200())
    response = client.get(url(mirror, EXT))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content.startswith(b"<!DOCTYPE html>")
    assert not response.content.startswith(b"%PDF-")


def test_deny_403(mirror: Mirror, client: httpx.Client) -> None:
    mirror.set_fault(NEW, Fault.deny_403())
    response = client.get(url(mirror, NEW))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "Access Denied" in response.text
    assert response.content == DENIAL_PAGE


def test_redirect(mirror: Mirror, client: httpx.Client, files: dict[str, Path]) -> None:
    mirror.set_fault(NEW, Fault.redirect(OLD))
    first = client.get(url(mirror, NEW))
    assert first.status_code == 302
    assert first.headers["location"] == url(mirror, OLD)
    followed = client.get(url(mirror, NEW), follow_redirects=True)
    assert followed.content == files[OLD].read_bytes()
    assert (mirror.requests(NEW), mirror.requests(OLD)) == (2, 1)


def test_refuses_to_bind_anything_but_loopback(files: dict[str, Path], tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "localhost", "192.168.1.1"):
        with pytest.raises(ConfigError, match=r"127\.0\.0\.1"):
            Mirror(files, host=host)
    with pytest.raises(ConfigError, match="not a file"):
        Mirror({NEW: tmp_path / "missing.pdf"})
    with pytest.raises(ConfigError):
        Fault.status(503, times=0)


def test_mapping_from_dir(tmp_path: Path) -> None:
    (tmp_path / "hep-th_9108004.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp_path / "2301.00001.pdf").write_bytes(b"%PDF-1.4\n")
    (tmp_path / "notes.txt").write_text("not served")
    assert mapping_from_dir(tmp_path) == {
        "hep-th_9108004": tmp_path / "hep-th_9108004.pdf",
        "2301.00001": tmp_path / "2301.00001.pdf",
    }
    assert set(mapping_from_dir(SAMPLES)) == {p.stem for p in PDFS}
    with pytest.raises(ConfigError):
        mapping_from_dir(tmp_path / "missing")


def test_main_rejects_a_missing_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_subprocess_mode(tmp_path: Path, stop_signal: signal.Signals) -> None:
    ready = tmp_path / "ready" / "mirror-url"
    ready.parent.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rpa.testing.mirror", str(SAMPLES), "--ready-file", str(ready)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        template = proc.stdout.readline().strip()  # blocks until the server is up
        assert template.startswith("http://127.0.0.1:") and template.endswith("/pdf/{id}")
        # The ready file is written (atomically) before the stdout line.
        assert ready.read_text() == template + "\n"
        assert [p.name for p in ready.parent.iterdir()] == ["mirror-url"]
        stem = PDFS[0].stem
        with httpx.Client(timeout=10) as client:
            assert client.get(template.replace("{id}", stem)).content == PDFS[0].read_bytes()
            stats_url = template.replace("/pdf/{id}", "/_stats")
            assert client.get(stats_url).json() == {"total": 1, "by_id": {stem: 1}}
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""  # no tracebacks
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
