"""A download removed under rpa, at the moments a user's `rm` can catch it (issue 18: "vanished
PDFs are downloaded again"; an outage is never a paper's fault).

Between its first byte and its extraction process's check a download is a file under --out:
a temporary file being written, then a private name waiting for its extraction, then the file
that extraction process is checking before it publishes it. Removed at any of those moments it
is downloaded again, uncounted, and said; the paper ends done with no attempt charged.
test_isolation.py deletes waiting downloads at a moment chosen by the clock; these two tests
catch the two narrow moments it can only hit by chance, each in order, without a sleep: the
real CLI, a real loopback mirror holding a body until released, real extraction processes.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from conftest import Cli, sample_pdfs, wait_for, write_ids
from test_crash import descendants
from test_faults import run_log

from rpa.testing.mirror import Fault, Mirror

SAMPLES = {p.stem: p for p in sample_pdfs()}
QUICK = SAMPLES["texlive-elsarticle-elstest-5p"]  # the smallest sample


def _downloads(out: Path, name: str, prefixes: int) -> list[Path]:
    """`name`'s download files under --out: 2 temporary prefixes while its body is written (its
    own, then the private name's), 1 once whole and waiting for its extraction."""
    return [p for p in (out / "pdf").rglob(f"*{name}") if p.name.count(".rpa-tmp.") == prefixes]


def _done_uncharged(cli: Cli, papers: int, said: str) -> None:
    """Every paper done, `said` said, no attempt charged nor any error row in `attempts`
    (before: ext:p1 done with 1 attempt charged)."""
    log = run_log(cli)
    assert cli.count("stage = 'done'") == papers, log[-3000:]
    assert f"ext:p1: {said}, downloading again" in log
    most = cli.query("SELECT max(attempts) FROM jobs")[0][0]
    rows = cli.query("SELECT job_id, stage, error_kind FROM attempts WHERE outcome = 'error'")
    assert (most, rows) == (0, []), log[-3000:]


def test_a_download_removed_while_its_extraction_checks_it_is_downloaded_again(
    tmp_path: Path,
) -> None:
    """The flake of test_isolation's deletion, in order: the extraction process has begun to
    check the download (reading it) when the file is removed; its check passes, then there is
    nothing to publish (before: a counted `io_error` of the download stage, no notice and no
    error row in `attempts`). To hold the check open, the waiting download is put back as a
    FIFO fed by the test (the extraction process is stopped meanwhile, so that it cannot have
    opened the file before), and its name is removed once the check has opened it."""
    files = {"p0": QUICK, "p1": QUICK}
    with Mirror(files, faults={"p1": Fault.slow_body(60, times=1)}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in files])
        proc = cli.popen("run", str(ids), *cli.knobs(workers=2, extract_workers=1, progress=False))
        stopped: set[int] = set()
        try:
            # p0 done: the extraction process is there; p1's body is held by the mirror
            wait_for(lambda: cli.count("stage = 'done'") == 1, 60, "p0 done")
            wait_for(lambda: mirror.requests("p1") == 1, 60, "p1 asked for")
            stopped = descendants(proc.pid)  # the forkserver and the extraction process
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            mirror.release_stalled()
            wait_for(lambda: _downloads(cli.out, "ext_p1.pdf", 1), 60, "p1 downloaded")
            (private,) = _downloads(cli.out, "ext_p1.pdf", 1)
            fifo = private.with_name("fifo")
            os.mkfifo(fifo)
            os.replace(fifo, private)
            fed: list[int] = []

            def feed() -> None:
                with open(private, "wb") as fh:  # returns once the check has opened it
                    private.unlink()
                    fed.append(fh.write(QUICK.read_bytes()))

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            stopped = set()
            feeder.join(60)
            assert fed == [QUICK.stat().st_size]
            assert proc.wait(timeout=60) == 0, run_log(cli)[-3000:]
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert mirror.requests("p1") == 2
    _done_uncharged(cli, 2, "stored PDF missing or changed")


def test_a_download_removed_while_its_body_is_written_is_downloaded_again(
    tmp_path: Path,
) -> None:
    """The download's temporary file is removed while its body comes (the mirror holds the
    rest of it until released): the rename finds no file (before: a counted `io_error`). A
    body over the megabyte the download gathers before its first write, so that the file is
    there to remove: a sample with 1.2 MB of comment lines after its %%EOF (still a PDF)."""
    big = tmp_path / "big.pdf"
    big.write_bytes(QUICK.read_bytes() + b"\n" + b"% padding\n" * 120_000)
    files = {"p1": big}
    faults = {"p1": Fault.slow_body(60, times=1, after=1_100_000)}
    with Mirror(files, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:p1"])
        proc = cli.popen("run", str(ids), *cli.knobs(workers=1, extract_workers=1, progress=False))
        try:
            wait_for(lambda: _downloads(cli.out, "ext_p1.pdf", 2), 60, "p1's body written")
            (temporary,) = _downloads(cli.out, "ext_p1.pdf", 2)
            temporary.unlink()
            mirror.release_stalled()
            assert proc.wait(timeout=60) == 0, run_log(cli)[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert mirror.requests("p1") == 2
    _done_uncharged(cli, 1, "download removed while written")
