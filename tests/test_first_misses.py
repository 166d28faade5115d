"""A PDF source that finds none of the papers (rpa.run.misses): a wrong --pdf-url is the run's
fault, not the papers'. Real CLI, a real loopback mirror, real SQLite files.

- a template with a wrong path (the mirror serves /pdf/, the run asks /pdfs/): the run stops
  `interrupted` after --first-misses papers, failed `not_found`, the rest untouched; with the
  template fixed (--reconfigure) and those papers put back (`rpa retry`), resume does them all;
- the same from a folder (`file://`) that is not the one the PDFs are in;
- once the source has served a PDF, a 404 is the paper's again (charged `not_found`);
- `--first-misses 0`: every 404 is charged at once, as before.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import Cli, sample_pdfs, write_ids

from rpa.testing.mirror import Mirror

PAPERS = {f"c{k}-{p.stem}": p for k in range(4) for p in sample_pdfs()}  # 24 papers
IDS = [f"ext:{name}" for name in PAPERS]
KNOBS = {"progress": False, "workers": 4, "extract_workers": 1, "first_misses": 5}


def _state(cli: Cli) -> dict[str, tuple[str, int]]:
    return {r[0]: (r[1], r[2]) for r in cli.query("SELECT id, stage, attempts FROM jobs")}


def test_a_wrong_pdf_url_stops_the_run_and_leaves_the_rest_queued(tmp_path: Path) -> None:
    with Mirror(PAPERS) as mirror:
        wrong = mirror.url_template.replace("/pdf/", "/pdfs/")
        cli = Cli(tmp_path, wrong)
        ids = write_ids(tmp_path / "ids.txt", IDS)
        first = cli.run("run", str(ids), *cli.knobs(**KNOBS))
        said = " ".join((first.stdout + first.stderr).split())
        assert first.returncode == 130, said
        assert "the PDF source found none of the first 5 papers" in said, said
        assert f"is --pdf-url {wrong} right?" in said, said
        assert f"rpa retry --db {cli.db} --kind not_found" in said and "Traceback" not in said
        stages = [s for s, _ in _state(cli).values()]
        # the 5, and what the 4 workers had in flight then; the rest untouched
        assert 5 <= stages.count("failed") <= 5 + 4 and stages.count("queued") >= 24 - 9
        # the summary counts what the queue took, those in flight too (it once said one less)
        assert f"0 done, {stages.count('failed')} failed this run" in said, said
        # the template put right, those papers put back: every paper done
        right = cli.knobs(**KNOBS, pdf_url=mirror.url_template)
        again = cli.run("resume", *right, "--reconfigure")
        assert again.returncode == 1, again.stdout + again.stderr  # (the failed stay failed)
        assert cli.run("retry", "--db", str(cli.db), "--kind", "not_found").returncode == 0
        last = cli.run("resume", *right)
        assert last.returncode == 0, last.stdout + last.stderr
        assert {s for s, _ in _state(cli).values()} == {"done"}


def test_a_wrong_folder_stops_the_run_too(tmp_path: Path) -> None:
    folder = tmp_path / "pdfs"
    folder.mkdir()
    for name, path in PAPERS.items():
        shutil.copy(path, folder / f"{name}.pdf")
    cli = Cli(tmp_path, f"file://{tmp_path}/pdf/{{id}}.pdf")  # not the folder they are in
    ids = write_ids(tmp_path / "ids.txt", IDS)
    first = cli.run("run", str(ids), *cli.knobs(**KNOBS))
    assert first.returncode == 130, first.stdout + first.stderr
    assert "found none of the first" in " ".join(first.stderr.split())
    assert "queued" in {s for s, _ in _state(cli).values()}  # the run stopped: some were left


def test_once_a_pdf_came_a_404_is_the_paper_s_own(tmp_path: Path) -> None:
    """The first paper the mirror has comes first (one worker); the 8 it lacks after it fail
    `not_found`, counted, although they are more than --first-misses."""
    missing = [f"ext:gone-{k}" for k in range(8)]
    with Mirror(PAPERS) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", IDS[:1] + missing)
        done = cli.run("run", str(ids), *cli.knobs(**KNOBS | {"workers": 1}))
    assert done.returncode == 1, done.stdout + done.stderr
    state = _state(cli)
    assert state[IDS[0]][0] == "done"
    assert {state[m] for m in missing} == {("failed", 1)}


def test_first_misses_0_charges_each_404_at_once(tmp_path: Path) -> None:
    with Mirror(PAPERS) as mirror:
        cli = Cli(tmp_path, mirror.url_template.replace("/pdf/", "/pdfs/"))
        ids = write_ids(tmp_path / "ids.txt", IDS[:6])
        done = cli.run("run", str(ids), *cli.knobs(**KNOBS | {"first_misses": 0}))
    assert done.returncode == 1, done.stdout + done.stderr
    assert {s for s, _ in _state(cli).values()} == {"failed"}


def test_a_source_that_serves_html_for_every_paper_stops_the_run(tmp_path: Path) -> None:
    """A login wall or a captcha page for every paper (200, an HTML page): each paper's
    `not_pdf` alone, but the first N with no PDF served are the source's (an adversary's
    trial failed a whole list so)."""
    page = tmp_path / "wall.html"
    page.write_text("<!DOCTYPE html><html><body>Please sign in to continue</body></html>\n")
    with Mirror(dict.fromkeys(PAPERS, page)) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", IDS)
        first = cli.run("run", str(ids), *cli.knobs(**KNOBS))
    said = " ".join((first.stdout + first.stderr).split())
    assert first.returncode == 130, said
    assert "the PDF source served no PDF for any of the first 5 papers asked of it" in said
    assert f"rpa retry --db {cli.db} --kind not_pdf`" in said, said
    stages = [s for s, _ in _state(cli).values()]
    assert 5 <= stages.count("failed") <= 5 + 4 and stages.count("queued") >= 24 - 9
