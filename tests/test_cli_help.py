"""Every command has help, every knob is a flag with its env var, and the README says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rpa.cli import app
from rpa.config import knob_fields

README = (Path(__file__).parent.parent / "README.md").read_text()
COMMANDS = ["run", "resume", "status", "export", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"`rpa {command}" in README, f"README has no example of rpa {command}"


def test_run_help_lists_every_knob_with_its_env_var() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "250"})
    for f in knob_fields():
        flag = "--" + f.name.replace("_", "-")
        assert flag in result.output, flag
        assert f"RPA_{f.name.upper()}" in result.output, f.name


def test_readme_knob_table_is_complete() -> None:
    for f in knob_fields():
        assert f"`RPA_{f.name.upper()}`" in README, f.name
        assert f"`--{f.name.replace('_', '-')}" in README, f.name
