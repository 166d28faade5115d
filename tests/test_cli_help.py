"""Every command has help, every knob is a flag with its env var, and the docs say so."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpa.cli import app
from rpa.config import knob_fields

ROOT = Path(__file__).parent.parent
#: the README and the pages it links to (docs/)
DOCS = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
KNOBS_PAGE = (ROOT / "docs" / "knobs.md").read_text()
COMMANDS = ["run", "resume", "status", "export", "retry", "migrate", "demo"]


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
