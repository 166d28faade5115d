"""A run stopped while downloads wait for their extraction keeps them: each is checked,
fsynced and published under its final name as its extraction process would have
(rpa.sources.publish.keep_download), and the next run adopts it instead of downloading it
again (a newcomer's trial: every Ctrl-C cost up to --prefetch requests again, 50-62 of 100
papers; against arXiv's 4 requests in 2 s, its politeness budget). Real CLI, real loopback
mirror counting requests, real extraction processes."""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import Cli, sample_pdfs, wait_for, write_ids
from test_faults import interrupt, run_log

from rpa.layout import Layout
from rpa.testing.mirror import Mirror

SLOWEST = max(sample_pdfs(), key=lambda p: p.stat().st_size)


def _waiting(out: Path) -> list[Path]:
    """Downloads under their private names, whole, waiting for their extraction."""
    return [p for p in (out / "pdf").rglob("*.pdf") if p.name.count(".rpa-tmp.") == 1]


def test_a_stopped_run_keeps_the_downloads_that_waited_and_the_next_does_not_fetch_them(
    tmp_path: Path,
) -> None:
    names = [f"p{i}" for i in range(8)]
    with Mirror({n: SLOWEST for n in names}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in names])
        knobs = cli.knobs(workers=8, extract_workers=1, grace=0.2, progress=False)
        proc = cli.popen("run", str(ids), *knobs)
        try:
            wait_for(lambda: len(_waiting(cli.out)) >= 4, 60, "downloads waiting")
            code = interrupt(proc, signal.SIGINT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 130, run_log(cli)[-3000:]
        layout = Layout(cli.out)
        done = {r[0] for r in cli.query("SELECT id FROM jobs WHERE stage = 'done'")}
        kept = [n for n in names if f"ext:{n}" not in done and layout.pdf_path(f"ext:{n}").exists()]
        assert len(kept) >= 3, (done, run_log(cli)[-3000:])  # before: none, all removed
        assert _waiting(cli.out) == []
        resumed = cli.run("resume", *cli.knobs(progress=False))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert cli.count("stage = 'done'") == len(names)
    assert {n: mirror.requests(n) for n in kept} == {n: 1 for n in kept}  # not fetched again
    assert cli.query("SELECT max(attempts) FROM jobs")[0][0] == 0
