"""Every command has help, every knob is a flag with its env var, and the docs say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpa.cli import app
from rpa.config import Settings, knob_choices, knob_fields
from rpa.queue.model import QUEUE_SETTINGS

ROOT = Path(__file__).parent.parent
#: the README and the pages it links to (docs/)
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
KNOBS_PAGE = (ROOT / "docs" / "knobs.md").read_text()
COMMANDS = ["run", "resume", "status", "failures", "export", "retry", "migrate", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"`rpa {command}" in DOCS, f"README and docs/ have no example of rpa {command}"


def test_run_help_lists_every_knob_with_its_env_var() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    for f in knob_fields():
        flag = "--" + f.name.replace("_", "-")
        assert flag in result.output, flag
        assert f"RPA_{f.name.upper()}" in result.output, f.name


def test_knob_table_is_complete() -> None:
    for f in knob_fields():
        assert f"`RPA_{f.name.upper()}`" in KNOBS_PAGE, f.name
        assert f"`--{f.name.replace('_', '-')}" in KNOBS_PAGE, f.name


def test_help_shows_each_knobs_default_and_brackets_literally() -> None:
    """Rich markup ate `[default: 200]` and the `[pdfium]` of `rpa[pdfium]`."""
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    text = " ".join(result.output.split())
    assert "rpa[pdfium]" in text
    for f in knob_fields():
        default = f.default if not isinstance(f.default, str) or f.default else "''"
        assert f"[default: {default}]" in text, f.name


def test_export_into_a_closed_pipe_exits_0_quietly(tmp_path: Path) -> None:
    """`rpa export | head -1` on many records: the reader leaves, rpa ends quietly, exit 0."""
    import subprocess
    import sys

    from conftest import clean_env

    from rpa.queue import jobs, open_store, runs
    from rpa.queue.model import RunInfo

    db = tmp_path / "q.db"
    store = open_store(db)
    keys = [f"2301.{i:05d}" for i in range(1, 3001)]
    store.enqueue(keys, 0.0)
    runs.register_run(store, RunInfo("r", "run", 0.0, 5.0, "{}"))
    for job in jobs.claim(store, "r", 3000, 1e9, 0.0):
        record = {"id": job.id, "title": "x" * 500, "pdf": {}}
        jobs.complete(store, "r", job.lease, record, "/o.json", 0.0)
    store.close()
    export = f"{sys.executable} -m rpa export --db {db}"
    shell = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {export} | head -1"],
        capture_output=True, text=True, env=clean_env(), timeout=60,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.count("\n") == 1 and "Traceback" not in shell.stderr
    assert "BrokenPipe" not in shell.stderr


def _help(command: str) -> str:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return result.output


def _options(text: str) -> dict[str, str]:
    """Each option's entry in a help text (its flags, then its help, on one line)."""
    entries: dict[str, str] = {}
    flag = ""
    for line in text[text.index("Options:") :].splitlines()[1:]:
        if line.startswith("  -"):
            flag = line.split()[0]
            entries[flag] = line
        elif flag:
            entries[flag] += " " + line.strip()
    return entries


@pytest.mark.parametrize("command", COMMANDS)
def test_help_examples_one_a_line_each_parsed_and_no_default_twice(command: str) -> None:
    """Examples ran together on one line ('... --download-concurrency 32 Example: rpa run
    ...'); `export --format` said its default twice."""
    import shlex

    import typer.main

    text = _help(command)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() in ("Example:", "Examples:"))
    examples = []
    for line in lines[start + 1 :]:
        if line and not line.startswith("  "):
            break
        if line.strip():
            examples.append(line.strip())
    assert examples and "Example" not in " ".join(examples)
    click_app = typer.main.get_command(app)
    mine = 0
    for example in examples:
        segments = [part.split(" > ")[0].strip() for part in example.split(" | ")]
        assert all(part.count("rpa ") <= 1 for part in segments), example  # one a line
        for part in segments:
            if not part.startswith("rpa "):
                continue
            words = shlex.split(part)[1:]
            mine += words[0] == command
            sub = click_app.commands[words[0]]  # type: ignore[attr-defined]
            sub.make_context(words[0], words[1:])  # its parser accepts it (nothing runs)
    assert mine >= 1
    for entry in _options(text).values():
        assert entry.count("[default:") <= 1, entry


def test_options_with_fixed_values_list_them() -> None:
    text = " ".join(_help("run").split())
    for f in knob_fields():
        choices = knob_choices(f)
        if choices:
            assert f"--{f.name.replace('_', '-')} <{'|'.join(choices)}>" in text, f.name
    assert "--format <jsonl|csv|parquet>" in " ".join(_help("export").split())
    for command in ("retry", "failures"):
        kinds = " ".join(_help(command).split())
        assert "--kind <kind>" in kinds and "not_found, not_pdf" in kinds


def test_demo_and_resume_show_the_defaults_they_use() -> None:
    """The demo runs on rpa-demo.db, rpa-demo-data and its own mirror; a resume on the
    queue's stored settings: Settings' defaults for those were shown, and were not used."""
    demo = " ".join(_help("demo").split())
    assert "[default: rpa-demo.db]" in demo and "[default: rpa-demo-data]" in demo
    assert "[default: rpa.db]" not in demo and "[default: rpa-data]" not in demo
    assert Settings().pdf_url not in demo and "[default: the demo's loopback mirror]" in demo
    resume = _options(_help("resume"))
    for key in QUEUE_SETTINGS:
        entry = " ".join(resume["--" + key.replace("_", "-")].split())
        assert "[default: the queue's, as first stored]" in entry, entry


def test_failures_into_a_closed_pipe_stop_reading_the_queue(tmp_path: Path) -> None:
    """`rpa failures | head -3` on 20,000 failures: the listing stops when its reader leaves
    (it went on formatting every paper into nowhere, 9 s for 197,000), exit 0, quietly. How
    many papers it read is counted by a sitecustomize around the listing's generator: a
    process's progress through a database cannot be seen from outside."""
    import subprocess
    import sys

    from conftest import clean_env, injected

    from rpa.queue import open_store

    db = tmp_path / "q.db"
    store = open_store(db)
    store.enqueue([f"ext:p{i:05d}" for i in range(20_000)], 0.0)
    with store.sql.transaction():
        store.sql.execute(
            "UPDATE jobs SET stage = 'failed', error_kind = 'not_found', attempts = 1, "
            "error_message = 'HTTP 404 from http://127.0.0.1:1/pdfs/x.pdf: no such file'"
        )
    store.close()
    tally = tmp_path / "read.txt"
    count_reads = (
        "import atexit, rpa.queue.status as s\n"
        "_listed = s.failed_papers\nn = [0]\n"
        "def failed_papers(*a, **k):\n"
        "    for paper in _listed(*a, **k):\n"
        "        n[0] += 1\n"
        "        yield paper\n"
        "s.failed_papers = failed_papers\n"
        f"atexit.register(lambda: open({str(tally)!r}, 'w').write(str(n[0])))\n"
    )
    env = clean_env(**injected(tmp_path, "count", count_reads))
    listing = f"{sys.executable} -m rpa failures --db {db}"
    shell = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {listing} | head -3"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines()[0].startswith("ext:p00000  not_found  1 attempt")
    assert "Traceback" not in shell.stderr and "BrokenPipe" not in shell.stderr
    assert 0 < int(tally.read_text()) < 5_000
