"""--keep-pdf: what a run keeps of the PDFs it downloaded, and what a resume does with that.

Real CLI, real loopback mirror serving real PDFs (and one broken PDF of tests/data/hostile),
real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Cli, sample_pdfs, write_ids

from rpa.layout import Layout
from rpa.testing.mirror import Mirror

PAPERS = {p.stem: p for p in sample_pdfs()[:3]}
BROKEN = Path(__file__).parent / "data" / "hostile" / "qpdf__bad7-attributeerror.pdf"
KNOBS = {"workers": 4, "extract_workers": 1, "progress": False, "max_attempts": 1}


def _run(tmp_path: Path, mirror: Mirror, keep: str) -> tuple[Cli, Layout]:
    cli = Cli(tmp_path, mirror.url_template)
    ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in [*PAPERS, "broken"]])
    result = cli.run("run", str(ids), *cli.knobs(**KNOBS), "--keep-pdf", keep)
    assert result.returncode == 1, result.stdout + result.stderr  # the broken one failed
    assert cli.count("stage = 'done'") == len(PAPERS)
    said = {"never": "(outcome/, text/)", "failed": "(outcome/, text/, pdf/ (failed papers')"}
    assert said[keep] in result.stdout + result.stderr  # where the results are, as they are
    return cli, Layout(cli.out)


@pytest.mark.parametrize("keep", ["never", "failed"])
def test_a_done_papers_pdf_is_not_kept_and_its_record_says_so(tmp_path: Path, keep: str) -> None:
    with Mirror({**PAPERS, "broken": BROKEN}) as mirror:
        cli, layout = _run(tmp_path, mirror, keep)
        for name in PAPERS:
            job = f"ext:{name}"
            assert not layout.pdf_path(job).exists(), job
            record = json.loads(layout.outcome_path(job).read_text())
            assert record["pdf"]["path"] is None and record["pdf"]["sha256"], record["pdf"]
            assert Path(record["text_path"]).read_text().startswith("[PAGE 1]")
            assert cli.query("SELECT pdf_path FROM jobs WHERE id = ?", job)[0][0] is None
        # the failed paper's PDF: kept for a retry with --keep-pdf failed, gone with never
        assert layout.pdf_path("ext:broken").exists() == (keep == "failed")
        assert not list(cli.out.rglob(".rpa-tmp.*"))
        # a retry of the failed paper fetches it again only where it was not kept
        assert cli.run("retry", "--db", str(cli.db)).returncode == 0
        cli.run("resume", "--db", str(cli.db), "--no-progress")
        assert mirror.requests("broken") == (1 if keep == "failed" else 2)
        assert all(mirror.requests(n) == 1 for n in PAPERS)  # done papers: never again


def test_always_is_the_default_and_keeps_every_pdf(tmp_path: Path) -> None:
    with Mirror({**PAPERS, "broken": BROKEN}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in [*PAPERS, "broken"]])
        cli.run("run", str(ids), *cli.knobs(**KNOBS))
        layout = Layout(cli.out)
        for name in [*PAPERS, "broken"]:
            assert layout.pdf_path(f"ext:{name}").read_bytes().startswith(b"%PDF-"), name


def test_local_files_are_never_removed(tmp_path: Path) -> None:
    """A --pdf-url file:// folder is the user's: --keep-pdf never removes nothing there."""
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for name, path in PAPERS.items():
        (folder / f"{name}.pdf").write_bytes(path.read_bytes())
    cli = Cli(tmp_path, f"file://{folder}/{{id}}.pdf")
    ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in PAPERS])
    result = cli.run("run", str(ids), *cli.knobs(**KNOBS), "--keep-pdf", "never")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.stem for p in folder.iterdir()) == sorted(PAPERS)
    record = json.loads(Layout(cli.out).outcome_path(f"ext:{sorted(PAPERS)[0]}").read_text())
    assert record["pdf"]["path"] == str(folder / f"{sorted(PAPERS)[0]}.pdf")
