"""`rpa retry` of a paper whose downloaded PDF cannot be read fetches it again: a body cut
with no Content-Length (a proxy or a server that died mid-body) cannot be told from a whole
one, so the cut PDF is published and its extraction fails `invalid_pdf`; a retry that
re-extracted the same file failed for ever (an adversary's trial). The real CLI against a
real loopback mirror whose first answer is cut, real SQLite."""

from __future__ import annotations

from pathlib import Path

from conftest import Cli, sample_pdfs, write_ids

from rpa.testing.mirror import Fault, Mirror


def test_retry_of_an_unreadable_download_fetches_it_again(tmp_path: Path) -> None:
    source = max(sample_pdfs(), key=lambda p: p.stat().st_size)
    with Mirror({"p": source}, faults={"p": Fault.cut_unsized(times=1)}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ["ext:p"])
        knobs = cli.knobs(progress=False, first_misses=0)
        first = cli.run("run", str(ids), *knobs)
        assert first.returncode == 1, first.stdout + first.stderr
        assert cli.query("SELECT stage, error_kind FROM jobs") == [("failed", "invalid_pdf")]
        retry = cli.run("retry", "--db", str(cli.db))
        assert retry.returncode == 0, retry.stdout + retry.stderr
        again = cli.run("resume", *knobs)
        assert again.returncode == 0, again.stdout + again.stderr
        assert mirror.requests("p") == 2  # fetched again, not re-extracted from the cut file
    assert cli.query("SELECT stage FROM jobs") == [("done",)]
    assert (cli.out / "pdf" / "ext" / "ext_p.pdf").read_bytes() == source.read_bytes()
