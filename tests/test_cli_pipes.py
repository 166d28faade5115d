"""The real CLI in a pipe (issue 21): JSON lines only under --log-format json, IDs from
standard input or a pipe, and the one-line errors of common mistakes."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

from conftest import HOSTILE, Cli, clean_env, sample_pdfs, write_ids

from rpa.queue import open_store
from rpa.testing.mirror import Fault, Mirror

SMALL = min(sample_pdfs(), key=lambda p: p.stat().st_size)
PAPERS = {f"p{i}": SMALL for i in range(3)}


def run_cli(
    cli: Cli, *args: str, stdin: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli.args(*args), cwd=cli.workdir, env=clean_env(), capture_output=True, text=True,
        timeout=timeout, input=stdin if stdin is not None else "",
    )  # fmt: skip


def test_log_format_json_makes_every_stdout_line_json(tmp_path: Path) -> None:
    """`rpa run ids.txt --log-format json | jq`: the first line was plain text ('queued 3
    new of ...'); now every line of stdout parses, from the first to the summary."""
    with Mirror(PAPERS) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{name}" for name in PAPERS] + ["bad id"])
        result = run_cli(cli, "run", str(ids), "--log-format", "json", *cli.knobs())
        again = run_cli(cli, "run", str(ids), "--log-format", "json", *cli.knobs())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    events = [json.loads(line) for line in lines]  # every line, or this raises
    assert events[0] == {"event": "queued", "new": 3, "valid": 3, "duplicates": 0,
                         "invalid": 1, "seconds": events[0]["seconds"]}  # fmt: skip
    assert events[-1]["event"] == "summary" and events[-1]["done"] == 3
    assert "skipped" in result.stderr  # what is for a person goes to stderr
    assert "results:" in result.stderr and "results:" not in result.stdout
    # a second run has nothing left: still JSON lines only
    assert [json.loads(line)["event"] for line in again.stdout.splitlines()] == [
        "queued",
        "nothing_left",
    ]


def test_ids_from_standard_input_a_pipe_and_dev_stdin(tmp_path: Path) -> None:
    """`rpa run -`, `rpa run /dev/stdin` and `rpa run <(...)` read the IDs as a stream (they
    failed with 'is not there'); --strict reads its input twice, a stream once: it works too."""
    names = [f"ext:{name}" for name in PAPERS]
    with Mirror(PAPERS) as mirror:
        cli = Cli(tmp_path, mirror.url_template)
        knobs = [*cli.knobs(), "--no-progress"]
        dash = run_cli(cli, "run", "-", *knobs, stdin=f"{names[0]}\n# a comment\n")
        dev = run_cli(cli, "run", "/dev/stdin", "--strict", *knobs, stdin=f"{names[1]}\n")
        # bash's process substitution: a pipe under /dev/fd, which cannot be stat'ed for size
        piped = subprocess.run(
            ["bash", "-c", 'exec "$@" <(printf "%s\\n" "$ID")', "bash",
             *cli.args("run"), *knobs],
            cwd=tmp_path, env=clean_env(ID=names[2]), capture_output=True, text=True,
            timeout=90, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        refused = run_cli(cli, "run", "-", "--strict", *knobs, stdin=f"{names[0]}\nnot an id\n")
    for result, new in ((dash, 1), (dev, 1), (piped, 1)):
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"queued {new} new of 1 valid IDs" in result.stdout
    assert cli.status()["totals"]["done"] == 3
    assert refused.returncode == 2 and "1 invalid line (--strict)" in refused.stderr


def test_a_refused_run_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    """A run refused for its input makes no queue file and no output folder (a bare `rpa run`
    made rpa-data/; a file of comments only, or --strict refusing a line, made rpa.db too); a
    queue that was there stays, with its work."""
    cli = Cli(tmp_path, "http://127.0.0.1:9/{id}")
    write_ids(tmp_path / "comments.txt", ["# nothing here yet", ""])
    write_ids(tmp_path / "bad.txt", ["2401.00001", "not-an-id"])
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = {
        ("run",): "give a file of IDs",
        ("run", "comments.txt"): "comments.txt holds no valid ID",
        ("run", "bad.txt", "--strict"): "1 invalid line (--strict), first at line 2",
    }
    for args, said in cases.items():
        result = run_cli(cli, *args, "--no-progress")
        assert result.returncode == 2 and said in result.stderr, (args, result.stderr)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, args
    # a queue that was there is kept, and so is what it holds (one paper failed for good)
    store = open_store(tmp_path / "rpa.db")
    store.enqueue(["2401.00001"], 0.0)
    with store.sql.transaction():
        store.sql.execute("UPDATE jobs SET stage = 'failed', error_kind = 'not_found'")
    store.close()
    again = run_cli(cli, "run", "comments.txt", "--no-progress")
    assert again.returncode == 2 and "holds no valid ID" in again.stderr, again.stderr
    assert cli.status()["totals"]["failed"] == 1


def test_common_mistakes_are_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "http://127.0.0.1:9/{id}")
    (tmp_path / "folder").mkdir()
    ids = write_ids(tmp_path / "ids.txt", ["2401.00001"])
    with tarfile.open(tmp_path / "papers.tar", "w") as tar:
        tar.add(ids, arcname="2401.00001.pdf")
    cases = {
        ("run", "folder"): "ID file folder is a folder, not a file of IDs",
        ("run", "papers.tar"): "did you mean `--pdf-tar papers.tar`",
        ("run", "ids.txt", "--db", "typo/q.db"): "the folder typo is not there (a typo?)",
        # a trailing slash names a folder: it was quietly taken as the file q.db
        ("run", "ids.txt", "--db", "q.db/"): "--db q.db/ names a folder, not a queue database "
        "file (for the file q.db, leave out the '/')",
        ("run", "ids.txt", "--db", "sqlite:///q.db/"): "names a folder, not a queue database file",
        ("run", "ids.txt", "--config", "folder"): "config file folder is a folder",
    }
    for args, said in cases.items():
        result = run_cli(cli, *args, "--no-progress")
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert said in result.stderr and "Errno" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "typo").exists() and not (tmp_path / "rpa.db").exists()
    env = subprocess.run(
        cli.args("status"), cwd=tmp_path, env=clean_env(RPA_DB="q.db/"), capture_output=True,
        text=True, timeout=90,
    )  # fmt: skip
    assert env.returncode == 2 and "$RPA_DB q.db/ names a folder" in env.stderr, env.stderr
    (tmp_path / "bad.toml").write_text('db = "q.db/"\n')
    toml = run_cli(cli, "status", "--config", str(tmp_path / "bad.toml"))
    said = "bad.toml: db = 'q.db/' names a folder"
    assert toml.returncode == 2 and said in toml.stderr, toml.stderr
    assert not (tmp_path / "q.db").exists()
    # a file the queue gives output to, named by a folder: the same, not a raw OSError
    (tmp_path / "q.db").write_bytes(b"")
    made = run_cli(cli, "run", "ids.txt", "--db", "q.db", "--pdf-url", cli.template,
                   "--no-progress", "--workers", "1")  # fmt: skip
    assert made.returncode in (0, 1), made.stderr
    export = run_cli(cli, "export", "--db", "q.db", "-o", "folder")
    assert export.returncode == 2 and export.stderr.strip() == (
        "error: folder is a folder, not a file"
    ), export.stderr


def test_failures_lists_each_failed_paper_and_its_ids_feed_another_run(
    tmp_path: Path, queue_db: str
) -> None:
    """`rpa failures`: ID, kind, attempts, stage, last try and the whole reason; --json lines;
    --ids a plain list that another run reads from a pipe (both backends)."""
    missing = ["ext:gone-1", "ext:gone-2"]
    with Mirror(PAPERS) as mirror:
        cli = Cli(tmp_path, mirror.url_template, queue_db)
        ids = write_ids(tmp_path / "ids.txt", [f"ext:{n}" for n in PAPERS] + missing)
        run = run_cli(cli, "run", str(ids), *cli.knobs(), "--no-progress")
        assert run.returncode == 1, run.stdout + run.stderr  # two papers not found
        db = str(cli.db)
        table = run_cli(cli, "failures", "--db", db)
        as_json = run_cli(cli, "failures", "--db", db, "--json")
        listed = run_cli(cli, "failures", "--db", db, "--ids")
        none = run_cli(cli, "failures", "--db", db, "--kind", "timeout")
        of_kind = run_cli(cli, "failures", "--db", db, "--kind", "not_found")
        bad = run_cli(cli, "failures", "--db", db, "--kind", "nope")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("ext:gone-1  not_found  1 attempt  at download  last try ")
    assert lines[1].startswith("    HTTP 404") and lines[1].endswith("/gone-1")
    assert lines[-1].startswith("2 failed papers; `rpa retry --db")
    # the hint puts back what was listed, not every failure
    assert of_kind.stdout.splitlines()[-1].endswith(" --kind not_found` puts them back")
    papers = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(p["id"], p["kind"], p["attempts"]) for p in papers] == [
        ("ext:gone-1", "not_found", 1),
        ("ext:gone-2", "not_found", 1),
    ]
    assert all(p["reason"].startswith("HTTP 404") and p["last_try"] > 0 for p in papers)
    assert listed.stdout == "ext:gone-1\next:gone-2\n"
    assert none.returncode == 0 and none.stdout == "" and "no failed papers of kind" in none.stderr
    assert bad.returncode == 2 and "'nope' is not one of 'access_denied'" in bad.stderr
    # the list is another run's input, through a pipe, once the papers can be had
    with Mirror({name.removeprefix("ext:"): SMALL for name in missing}) as again:
        other = Cli(tmp_path / "other", again.url_template)
        other.workdir.mkdir()
        rerun = run_cli(other, "run", "-", *other.knobs(), "--no-progress", stdin=listed.stdout)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "queued 2 new of 2 valid IDs" in rerun.stdout


def test_failures_name_the_stage_each_paper_failed_in(tmp_path: Path, queue_db: str) -> None:
    """`rpa failures` says the stage a paper failed in, as its attempts rows record it: a 404
    and an HTML page where the PDF should be failed downloading, a PDF pypdf cannot open
    failed extracting. (The queue's checkpoint of each is `queued`, once said as `at
    queued`.)"""
    broken = HOSTILE / "qpdf__bad7-attributeerror.pdf"  # pypdf raises AttributeError on it
    with Mirror({"fine": SMALL, "login": SMALL, "broken": broken}) as mirror:
        mirror.set_fault("login", Fault.html_200())
        cli = Cli(tmp_path, mirror.url_template, queue_db)
        ids = write_ids(tmp_path / "ids.txt", ["ext:fine", "ext:login", "ext:broken", "ext:gone"])
        run = run_cli(cli, "run", str(ids), *cli.knobs(), "--no-progress")
        assert run.returncode == 1, run.stdout + run.stderr
        table = run_cli(cli, "failures", "--db", str(cli.db))
        as_json = run_cli(cli, "failures", "--db", str(cli.db), "--json")
    assert table.returncode == 0 and as_json.returncode == 0, table.stderr + as_json.stderr
    heads = [line.split("  ") for line in table.stdout.splitlines() if line.startswith("ext:")]
    assert [(head[0], head[3]) for head in heads] == [
        ("ext:broken", "at extract"),
        ("ext:gone", "at download"),
        ("ext:login", "at download"),
    ]
    papers = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [(p["id"], p["kind"], p["stage"]) for p in papers] == [
        ("ext:broken", "invalid_pdf", "extract"),
        ("ext:gone", "not_found", "download"),
        ("ext:login", "not_pdf", "download"),
    ]


def test_run_dash_at_a_prompt_says_what_it_waits_for(tmp_path: Path) -> None:
    """`rpa run -` typed at a terminal waits for IDs: it says so, and how to end them."""
    import pexpect

    cli = Cli(tmp_path, "http://127.0.0.1:9/{id}")
    child = pexpect.spawn(
        cli.args()[0], [*cli.args()[1:], "run", "-", "--no-progress"], cwd=str(tmp_path),
        env=clean_env(), encoding="utf-8", timeout=60,
    )  # fmt: skip
    child.expect("reading IDs from standard input, one a line; end with Ctrl-D")
    child.sendline("not an id")
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2  # no valid ID: nothing to do
    assert "stdin:1: 'not an id'" in (child.before or "")
