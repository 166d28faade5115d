"""Runs a user can trust, with the real CLI, a real server on 127.0.0.1, real PDFs and real
SQLite files: resume continues the run it resumes (the queue keeps its settings), failed
papers can be retried, configuration is checked before any work, and no exception ends a run
or hides.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
from pathlib import Path

from conftest import Cli, sample_pdfs, write_ids
from test_faults import FAST, interrupt, run_log, wait_until

from rpa.layout import Layout
from rpa.queue import open_store
from rpa.testing.mirror import Fault, Mirror

PAPERS = {p.stem: p for p in sample_pdfs()}
BROKEN = Path(__file__).parent / "data" / "hostile"


def ids_of(names: list[str]) -> list[str]:
    return [f"ext:{n}" for n in names]


def stages(cli: Cli) -> dict[str, tuple[str, str | None]]:
    return {r[0]: (r[1], r[2]) for r in cli.query("SELECT id, stage, error_kind FROM jobs")}


# ---------------------------------------------------------------------------- resume remembers


def test_a_bare_resume_continues_with_the_queues_out_and_pdf_url(tmp_path: Path) -> None:
    """`rpa run ids --db d.db --out d-data --pdf-url MIRROR`, interrupted; then a bare
    `rpa resume --db d.db`: the rest comes from the same mirror and lands in d-data (before,
    it went to arXiv's URL and ./rpa-data, and failed for good)."""
    names = sorted(PAPERS)
    faults = {n: Fault.slow_body(1.0) for n in names}
    with Mirror(PAPERS, faults=faults) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        cli.out = tmp_path / "d-data"
        ids = write_ids(tmp_path / "ids.txt", ids_of(names))
        proc = cli.popen("run", str(ids), *cli.knobs(workers=2, extract_workers=1, grace=0.1,
                                                      progress=False))  # fmt: skip
        try:
            wait_until(lambda: mirror.total_requests >= 2, 60, "two downloads", proc)
        finally:
            code = interrupt(proc, signal.SIGINT)
        assert code == 130, run_log(cli)
        left = cli.count("stage != 'done'")
        assert left > 0, "nothing was left to resume: the test proves nothing"
        for n in names:
            mirror.set_fault(n, None)
        resumed = cli.run("resume", "--db", str(cli.db), "--no-progress")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert cli.count("stage = 'done'") == len(names)
    outcomes = sorted(p.name for p in (tmp_path / "d-data" / "outcome").rglob("*.json"))
    assert len(outcomes) == len(names)
    assert not (tmp_path / "rpa-data").exists()  # nothing went to the default folder
    assert f"results: {tmp_path / 'd-data'}" in resumed.stdout
    # and once everything is done, a resume says so in one line and starts no run
    runs = cli.query("SELECT count(*) FROM runs")[0][0]
    again = cli.run("resume", "--db", str(cli.db), "--no-progress")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"nothing left to do in {cli.db}: {len(names)} done, 0 failed" in again.stdout
    assert "Stages" not in again.stdout and cli.query("SELECT count(*) FROM runs")[0][0] == runs
    as_json = cli.run("resume", "--db", str(cli.db), "--log-format", "json")
    event = json.loads(as_json.stdout)  # stdout holds only JSON; the sentence goes to stderr
    assert event == {"event": "nothing_left", "db": str(cli.db), "done": len(names),
                     "failed": 0, "remaining": 0}  # fmt: skip
    assert "nothing left to do" in as_json.stderr


def test_a_contradicting_setting_is_refused_naming_both_unless_reconfigure(
    tmp_path: Path,
) -> None:
    name = sorted(PAPERS)[0]
    with Mirror({name: PAPERS[name]}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ids_of([name]))
        assert cli.run("run", str(ids), *cli.knobs(progress=False)).returncode == 0
        db = ["--db", str(cli.db)]
        # a flag, an env var and a config file are all refused, each named
        flag = cli.run("resume", *db, "--out", str(tmp_path / "other"))
        assert flag.returncode == 2
        assert f"out: the queue has '{cli.out}', --out says '{tmp_path / 'other'}'" in flag.stderr
        env = cli.run("resume", *db, RPA_EXTRACTOR="pdfium")
        assert env.returncode == 2 and "$RPA_EXTRACTOR says 'pdfium'" in env.stderr
        (tmp_path / "rpa.toml").write_text("max_pdf_mb = 5\n")
        conf = cli.run("resume", *db)
        assert conf.returncode == 2 and "max_pdf_mb: the queue has 100.0" in conf.stderr
        assert "--reconfigure" in conf.stderr
        (tmp_path / "rpa.toml").unlink()
        # the same values as stored are no contradiction; tuning knobs are per invocation
        same = cli.run("resume", *db, "--out", str(cli.out), "--workers", "3", "--no-progress")
        assert same.returncode == 0, same.stderr
        # with --reconfigure the change is made and recorded
        changed = cli.run("resume", *db, "--max-pdf-mb", "50", "--reconfigure", "--no-progress")
        assert changed.returncode == 0, changed.stderr
        assert "max_pdf_mb: 100.0 -> 50.0 (--reconfigure; recorded)" in changed.stderr
    status = cli.status()
    assert status["settings"]["max_pdf_mb"] == 50.0
    assert status["settings"]["out"] == str(cli.out)
    assert status["settings"]["pdf_url"] == mirror.url_template
    [change] = status["settings_changes"]
    assert (change["key"], change["old_value"], change["new_value"]) == ("max_pdf_mb", "100.0",
                                                                         "50.0")  # fmt: skip
    shown = cli.run("status", "--db", str(cli.db))
    assert "Settings of this queue" in shown.stdout and mirror.url_template in shown.stdout


# ---------------------------------------------------------------------------- retry


def test_after_a_bad_spell_rpa_retry_puts_failed_papers_back_and_keeps_checkpoints(
    tmp_path: Path,
) -> None:
    """A server that answered 500 for some papers while it served another (the host works:
    each of them is charged; a host that answers nothing charges none, tests/test_outage.py;
    without the paper served, whether the host looked down or charged the papers hung on the
    order the answers came in, which load changes)."""
    names, served = sorted(PAPERS)[:3], sorted(PAPERS)[3]
    broken = "qpdf--bad7-attributeerror"  # downloads fine, fails extracting
    files = {**{n: PAPERS[n] for n in [*names, served]},
             broken: BROKEN / "qpdf__bad7-attributeerror.pdf"}  # fmt: skip
    with Mirror(files, faults={n: Fault.status(500) for n in names}) as down:
        port = down.port
        cli = Cli(tmp_path, down.url_template)
        ids = write_ids(tmp_path / "ids.txt", ids_of([*names, served]))
        knobs = cli.knobs(**{**FAST, "max_attempts": 1})
        outage = cli.run("run", str(ids), *knobs)
    assert outage.returncode == 1
    assert {stages(cli)[i][0] for i in ids_of(names)} == {"failed"}
    assert stages(cli)[f"ext:{served}"][0] == "done"
    assert "http_transient" in outage.stdout  # the summary names the kind, with its reason
    again = cli.run("run", str(ids), *knobs)  # today: "already queued", nothing to do
    assert "queued 0 new of 4 valid IDs" in again.stdout and again.returncode == 1
    with Mirror(files, port=port) as mirror:
        write_ids(tmp_path / "more.txt", [f"ext:{broken}"])
        assert cli.run("run", str(tmp_path / "more.txt"), *knobs).returncode == 1
        assert stages(cli)[f"ext:{broken}"] == ("failed", "invalid_pdf")
        retried = cli.run("retry", "--db", str(cli.db), "--kind", "http_transient")
        assert retried.returncode == 0, retried.stderr
        assert "http_transient" in retried.stdout and "3 failed papers back in the queue" in (
            retried.stdout
        )
        assert cli.count("stage = 'queued' AND attempts = 0") == 3  # fresh attempts
        assert mirror.total_requests == 1  # retry processes nothing
        assert cli.run("resume", "--db", str(cli.db), "--no-progress").returncode == 1
        assert cli.count("stage = 'done'") == 4
        # a paper that failed extracting keeps its downloaded PDF: not fetched again
        assert cli.run("retry", "--db", str(cli.db)).stdout.strip().startswith("invalid_pdf")
        cli.run("resume", "--db", str(cli.db), "--no-progress")
        assert mirror.requests(broken) == 1
        extracts = cli.query(
            "SELECT count(*) FROM attempts WHERE job_id = ? AND stage = 'extract'", f"ext:{broken}"
        )
        assert extracts[0][0] == 2  # tried twice; its history is kept
        nothing = cli.run("retry", "--db", str(cli.db), "--kind", "timeout")
        assert nothing.returncode == 0 and "no failed papers of kind timeout" in nothing.stdout
        typo = cli.run("retry", "--db", str(cli.db), "--kind", "conection")
        assert typo.returncode == 2 and "'conection' is not one of" in typo.stderr
        assert "http_transient" in typo.stderr  # the kinds there are


# ---------------------------------------------------------------------------- checks first


def test_a_bad_pdf_url_is_refused_at_start_before_any_database(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "unused")
    ids = write_ids(tmp_path / "ids.txt", ["2301.00001"])
    for template, says in [
        ("ftp://x/{id}", "must start with http://, https:// or file://"),
        ("http://x/pdf?x={y}&id={id}", "no placeholder but {id}"),
        ("http://x/pdf/", "must contain {id}"),
    ]:
        result = cli.run("run", str(ids), "--db", str(cli.db), "--pdf-url", template)
        assert result.returncode == 2 and says in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not cli.db.exists()


def test_configuration_errors_come_before_a_single_id_is_queued(tmp_path: Path) -> None:
    """--extractor pdfium without the extra: refused before the 1,000 IDs are queued. The
    extra is made unimportable for the child (a real import failure, not a mock)."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoPdfium:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pypdfium2':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoPdfium())\n"
    )
    cli = Cli(tmp_path, "http://127.0.0.1:9/pdf/{id}")
    ids = write_ids(tmp_path / "ids.txt", [f"2301.{i:05d}" for i in range(1, 1001)])
    result = cli.run("run", str(ids), *cli.knobs(extractor="pdfium"), PYTHONPATH=str(block))
    assert result.returncode == 2
    assert "rpa[pdfium]" in result.stderr and "Traceback" not in result.stderr
    assert not cli.db.exists() or cli.count("1 = 1") == 0
    # --out naming a file: refused before the IDs are queued too
    (tmp_path / "a-file").write_text("x")
    result = cli.run("run", str(ids), *cli.knobs(out=tmp_path / "a-file"))
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr
    assert not cli.db.exists() or cli.count("1 = 1") == 0


def test_a_missing_id_file_creates_no_database_and_an_empty_list_is_an_error(
    tmp_path: Path,
) -> None:
    name = sorted(PAPERS)[0]
    with Mirror({name: PAPERS[name]}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        missing = cli.run("run", str(tmp_path / "nope.txt"), *cli.knobs())
        assert missing.returncode == 2 and "nope.txt is not there" in missing.stderr
        assert not cli.db.exists()
        junk = write_ids(tmp_path / "junk.txt", ["not an id", "neither"])
        empty = cli.run("run", str(junk), *cli.knobs())
        assert empty.returncode == 2 and "holds no valid ID" in empty.stderr
        # with work in the queue, a list without valid IDs lets that work run
        store = open_store(cli.db)
        store.enqueue(ids_of([name]), 0.0)
        store.close()
        works = cli.run("run", str(junk), *cli.knobs(progress=False, workers=1))
        assert works.returncode == 0, works.stderr
        assert cli.count("stage = 'done'") == 1
        # and once all is done, it is an input error again
        assert cli.run("run", str(junk), *cli.knobs()).returncode == 2


# ---------------------------------------------------------------------------- no crash path


def test_an_exception_in_one_paper_fails_that_paper_and_the_run_goes_on(tmp_path: Path) -> None:
    """An OSError writing the outcome (a directory where its file should be): that paper
    fails, explained; the others are done; the run is `finished`, not a traceback."""
    names = sorted(PAPERS)[:4]
    with Mirror({n: PAPERS[n] for n in names}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ids_of(names))
        (cli.out / "outcome" / "ext" / f"ext_{names[0]}.json").mkdir(parents=True)
        knobs = cli.knobs(workers=1, progress=False, max_attempts=1, extract_workers=1)
        result = cli.run("run", str(ids), *knobs, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    state = stages(cli)
    assert state[f"ext:{names[0]}"] == ("failed", "write_error")
    message = cli.query("SELECT error_message FROM jobs WHERE id = ?", f"ext:{names[0]}")[0][0]
    assert "IsADirectoryError" in message and "outcome stage" in message
    assert [s for s, _ in state.values()].count("done") == len(names) - 1
    assert cli.status()["runs"][0]["status"] == "finished"
    assert "write_error" in result.stdout and "IsADirectoryError" in result.stdout


def test_an_sqlite_error_fails_its_paper_and_a_broken_database_ends_the_run_as_crashed(
    tmp_path: Path,
) -> None:
    names = sorted(PAPERS)[:3]
    files = {n: PAPERS[n] for n in names} | {"late": PAPERS[names[0]]}
    with Mirror(files) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ids_of(names))
        knobs = cli.knobs(workers=1, progress=False, max_attempts=1, extract_workers=1)
        store = open_store(cli.db)  # the queue exists; a trigger of the user's refuses
        store.close()  # one paper's completion: a real sqlite3 error inside the run
        raw = sqlite3.connect(cli.db)
        raw.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE OF stage ON jobs "
            f"WHEN NEW.id = 'ext:{names[1]}' AND NEW.stage = 'done' "
            "BEGIN SELECT RAISE(ABORT, 'refused by a trigger'); END"
        )
        raw.commit()
        result = cli.run("run", str(ids), *knobs, timeout=120)
        assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
        state = stages(cli)
        assert state[f"ext:{names[1]}"] == ("failed", "internal")
        message = cli.query("SELECT error_message FROM jobs WHERE id = ?", f"ext:{names[1]}")
        assert "refused by a trigger" in message[0][0]
        assert [s for s, _ in state.values()].count("done") == 2
        assert cli.status()["runs"][0]["status"] == "finished"
        # now the database refuses every change of one job, its failure included: the run
        # cannot go on, and says so; it is recorded as crashed, never finished
        raw.execute("DROP TRIGGER refuse")
        raw.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE OF stage ON jobs WHEN OLD.id = 'ext:late' "
            "BEGIN SELECT RAISE(ABORT, 'this job cannot change'); END"
        )
        raw.commit()
        raw.close()
        write_ids(tmp_path / "late.txt", ["ext:late"])
        crashed = cli.run("run", str(tmp_path / "late.txt"), *knobs, timeout=120)
    assert crashed.returncode == 1 and "Traceback" not in crashed.stdout + crashed.stderr
    assert "the run crashed" in crashed.stdout and "this job cannot change" in crashed.stdout
    assert cli.status()["runs"][0]["status"] == "crashed"


def test_rpas_own_errors_never_show_a_traceback(tmp_path: Path) -> None:
    """A bare `rpa resume`, status/export/retry on no database, a bad knob: one line, exit 2;
    a wrong flag is typer's usage error (exit 2)."""
    cli = Cli(tmp_path, "unused")
    for args in (["resume"], ["status"], ["export"], ["retry"], ["migrate"],
                 ["run", "x.txt", "--workers", "0"]):  # fmt: skip
        result = cli.run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip(), args
    assert "no queue database at rpa.db; start one with `rpa run IDS`" in cli.run("resume").stderr
    wrong = cli.run("run", "--no-such-flag")
    assert wrong.returncode == 2 and "No such option" in wrong.stderr
    assert not (tmp_path / "rpa.db").exists()


# ---------------------------------------------------------------------------- adoption


def test_a_whole_pdf_left_at_its_final_name_is_adopted_on_a_later_claim_only(
    tmp_path: Path,
) -> None:
    """A run killed between the rename of a download and its checkpoint leaves a whole PDF
    at its final name: the next claim of that job uses it instead of fetching it again. A
    job's first claim has no earlier run, so it does not look (and overwrites the file).

    The killed-between-rename-and-checkpoint state is placed by hand (a copy of the PDF at
    its final name): no real kill can be timed into that gap."""
    name, other = sorted(PAPERS)[:2]
    pdf = PAPERS[name]
    layout = Layout(tmp_path / "out")
    with Mirror(PAPERS, faults={name: Fault.status(404)}) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        # `other`'s final name holds a stale whole PDF before its first claim: not adopted
        stale = layout.pdf_path(f"ext:{other}")
        stale.parent.mkdir(parents=True, exist_ok=True)
        stale.write_bytes(pdf.read_bytes())
        ids = write_ids(tmp_path / "ids.txt", ids_of([name, other]))
        first = cli.run("run", str(ids), *cli.knobs(**FAST))
        assert first.returncode == 1, first.stdout + first.stderr  # `name` failed: a 404
        assert stages(cli)[f"ext:{name}"] == ("failed", "not_found")
        assert mirror.requests(other) == 1
        assert stale.read_bytes() == PAPERS[other].read_bytes()  # fetched, not adopted
        # the interrupted run's whole PDF of `name`, at its final name
        dest = layout.pdf_path(f"ext:{name}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(pdf.read_bytes())
        mirror.set_fault(name, None)
        assert cli.run("retry", "--db", str(cli.db)).returncode == 0
        resumed = cli.run("resume", "--db", str(cli.db), "--no-progress")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert mirror.requests(name) == 1  # only the 404: the PDF on disk was adopted
    assert stages(cli)[f"ext:{name}"] == ("done", None)
    sha = cli.query("SELECT pdf_sha256 FROM jobs WHERE id = ?", f"ext:{name}")[0][0]
    assert sha == hashlib.sha256(pdf.read_bytes()).hexdigest()


def test_a_reader_that_leaves_does_not_change_how_the_run_ends(tmp_path: Path) -> None:
    """`rpa run ids | head -1`: the run goes on to its end and exits with its own code (rich,
    then click, made a closed pipe exit 1 without a word)."""
    import shlex
    import subprocess

    from conftest import clean_env

    with Mirror(PAPERS) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", ids_of(sorted(PAPERS)))
        command = shlex.join(cli.args("run", str(ids), *cli.knobs(progress=False)))
        shell = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {command} | head -1"], cwd=tmp_path,
            capture_output=True, text=True, env=clean_env(), timeout=120,
        )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith("queued ") and shell.stdout.count("\n") == 1
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr
    assert cli.count("stage = 'done'") == len(PAPERS)
