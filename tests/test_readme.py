"""The README and docs/ say what works: every command in their code blocks is one rpa accepts,
run.sh sets no knob (a config file is honoured under it), and the wheel a user installs with
pipx or uv carries the `rpa` command and what the demo needs."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import typer

from rpa.cli import app

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: how run.sh maps its first argument (see its last `case`): these go to rpa as they are
RUN_SH_COMMANDS = {"run", "demo", "resume", "status", "export", "retry", "migrate"}
#: shell words that end a command's arguments
SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "2>", "2>&1", "(", ")"}
#: click's UsageError, which typer may carry a copy of (typer._click): found from typer's own
#: BadParameter, whichever click it is
USAGE_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError" and issubclass(c, Exception)
)
#: commands shown for a feature on another branch (issue 21's failures listing): xfail(strict)
#: makes this test fail once they parse, so the lead removes them from here after the merge
PENDING: tuple[str, ...] = ()


def _code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(language, lines) of each fenced code block."""
    blocks: list[tuple[str, list[str]]] = []
    lang: str | None = None
    lines: list[str] = []
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\S*)", line)
        if fence and lang is None:
            lang, lines = fence.group(1), []
        elif fence:
            blocks.append((lang or "", lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return blocks


def _commands(text: str) -> list[list[str]]:
    """Each `rpa ...` or `./run.sh ...` command of the shell blocks (every line), of the
    output blocks (lines after a `$ ` prompt) and of the text's code spans, as rpa's
    arguments (run.sh's routing applied; `./run.sh test` is pytest's, not rpa's: left out)."""
    found = []
    for lang, lines in _code_blocks(text):
        if lang not in ("", "sh", "bash", "console"):
            continue
        for line in lines:
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            elif lang in ("", "console"):
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words = list(lexer)
            command: list[str] = []
            for word in [*words, ";"]:
                if word in SHELL_OPERATORS or set(word) <= set("|&;<>()"):
                    if command:
                        found.append(command)
                    command = []
                else:
                    command.append(word)
    for span in re.findall(r"(?<!`)`((?:rpa|\./run\.sh) [^`]+)`(?!`)", text):
        words = shlex.split(span.replace("...", ""), comments=True)
        cut = [i for i, w in enumerate(words) if w in SHELL_OPERATORS]
        found.append(words[: cut[0]] if cut else words)
    out = []
    for words in found:
        launcher, args = words[0], words[1:]
        if launcher in ("rpa", ".venv/bin/rpa"):
            out.append(args)
        elif launcher == "./run.sh":
            if args[:1] == ["test"]:
                continue
            out.append(args if not args or args[0] in RUN_SH_COMMANDS else ["run", *args])
    return out


def _documented() -> list[tuple[str, list[str]]]:
    return [(p.relative_to(ROOT).as_posix(), c) for p in PAGES for c in _commands(p.read_text())]


def parse_only(args: list[str]) -> None:
    """Parse `rpa ARGS` with rpa's own parser, invoking nothing (click's make_context on the
    group, then on the command it names)."""
    group: Any = typer.main.get_command(app)
    if not args or args[0] in ("--help", "-h", "--version"):
        return
    name, command, rest = group.resolve_command(group.make_context("rpa", [args[0]]), args)
    assert command is not None, args
    if "--help" in rest:
        return
    command.make_context(name or args[0], rest, resilient_parsing=False)


def test_the_pages_show_commands() -> None:
    """The reader below must find them: the README's six things, and docs/ pages."""
    documented = _documented()
    assert len(documented) > 100
    readme = {tuple(c[:1]) for page, c in documented if page == "README.md"}
    assert {("run",), ("resume",), ("status",), ("retry",), ("export",), ("demo",)} <= readme


def test_a_wrong_command_is_caught() -> None:
    """The check can fail: a flag rpa lacks, a missing value, an unknown command."""
    for wrong in (["run", "ids.txt", "--wokers", "7"], ["export", "--format"], ["stauts"]):
        with pytest.raises(USAGE_ERROR):
            parse_only(wrong)


@pytest.mark.parametrize(
    ("page", "args"),
    [
        pytest.param(
            page, args, id=f"{page}: {shlex.join(args)}",
            marks=[pytest.mark.xfail(strict=True, reason="pending on another branch")]
            if any(p in args for p in PENDING) else [],
        )
        for page, args in _documented()
    ],
)  # fmt: skip
def test_every_documented_command_is_one_rpa_accepts(
    page: str, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("RPA_")]:
        monkeypatch.delenv(key)
    try:
        parse_only(args)
    except USAGE_ERROR as exc:
        pytest.fail(f"{page}: rpa {shlex.join(args)}: {exc}")


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    assert "./run.sh test " in (ROOT / "README.md").read_text()
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in lines if line.startswith("exec")] == ["exec ./run.sh test"]


#: a stand-in for the venv's `rpa` that resolves the settings as `rpa run` does
#: (rpa.config.load_settings, from the environment run.sh hands over and the working
#: directory's rpa.toml) and prints them: a real run shows its settings only in its progress
#: lines, the first after 5 s
SETTINGS_RPA = (
    "import os, sys\n"
    "from rpa.config import load_settings\n"
    "print(sys.argv[1:], load_settings().settings.workers, os.environ.get('RPA_LAUNCHER'))\n"
)


def app_commands() -> list[str]:
    """The names of rpa's commands, from its Typer app."""
    from typer.main import get_command

    group = get_command(app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def _fake_install(tmp_path: Path, rpa_body: str) -> Path:
    """run.sh beside a .venv its stamp says is installed, whose `rpa` runs `rpa_body` (with
    rpa importable from this tree: PYTHONPATH)."""
    home = tmp_path / "clone"
    (home / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "run.sh", home / "run.sh")
    shutil.copy(ROOT / "pyproject.toml", home / "pyproject.toml")
    with (home / "pyproject.toml").open("rb") as fh:
        cksum = subprocess.run(["cksum"], stdin=fh, capture_output=True, check=True).stdout
    (home / ".venv" / ".rpa-installed-run").write_bytes(cksum)
    (home / ".venv" / "bin" / "python").symlink_to(sys.executable)
    rpa = home / ".venv" / "bin" / "rpa"
    rpa.write_text(f"#!{sys.executable}\n{rpa_body}")
    rpa.chmod(0o755)
    (tmp_path / "work").mkdir()
    return home


def _run_sh(tmp_path: Path, *args: str, timeout: float = 60) -> str:
    """`../clone/run.sh ARGS` from the work folder; its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPA_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        ["../clone/run.sh", *args], cwd=tmp_path / "work", env=env, capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def test_run_sh_sets_no_knob_so_a_config_file_is_honoured(tmp_path: Path) -> None:
    """`workers = 7` in rpa.toml stays 7 under ./run.sh (it exported RPA_WORKERS=200, and the
    environment beats the config file); the defaults are rpa's own (Settings)."""
    _fake_install(tmp_path, SETTINGS_RPA)
    run_sh = functools.partial(_run_sh, tmp_path)
    assert run_sh("ids.txt") == "['run', 'ids.txt'] 200 ../clone/run.sh"  # rpa's default
    (tmp_path / "work" / "rpa.toml").write_text("workers = 7\n")
    assert run_sh("ids.txt", "--mailto", "a@b.c") == (
        "['run', 'ids.txt', '--mailto', 'a@b.c'] 7 ../clone/run.sh"
    )
    assert run_sh("run", "ids.txt").startswith("['run', 'ids.txt'] 7")
    assert run_sh("status", "--db", "q.db").startswith("['status', '--db', 'q.db'] 7")
    # every command of rpa's is passed on as it is (a newcomer's `./run.sh failures` was
    # taken for an ID file), and so are rpa's own flags
    for command in app_commands():
        assert run_sh(command).startswith(f"['{command}'] 7"), command
    assert run_sh("--version").startswith("['--version'] 7")
    assert run_sh("help").startswith("['--help'] 7")
    exported = re.findall(r"export (RPA_\w+)", (ROOT / "run.sh").read_text())
    assert exported == ["RPA_LAUNCHER"]


@pytest.mark.timeout(120)
def test_the_demo_under_run_sh_hints_at_run_sh(tmp_path: Path) -> None:
    """`rpa` is not on the PATH of a clone: after `./run.sh demo` the hints must run as shown
    (the venv's rpa is the real one here)."""
    # what pip writes as a console script (the guard: extraction processes are spawned)
    _fake_install(tmp_path, "from rpa.cli import main\nif __name__ == '__main__':\n    main()\n")
    first = _run_sh(tmp_path, "demo", "--workers", "10", "--no-progress", timeout=100)
    hint = "next: ../clone/run.sh status --db rpa-demo.db   |   ../clone/run.sh export --db "
    assert hint in first
    assert "rpa status" not in first and "rpa export" not in first
    status = _run_sh(tmp_path, "status", "--db", "rpa-demo.db")  # the hint, as shown
    assert "rpa-demo.db" in status
    again = _run_sh(tmp_path, "demo")
    assert "see them: ../clone/run.sh status --db rpa-demo.db" in again
    assert "run it afresh: ../clone/run.sh demo --fresh" in again


def test_the_hints_name_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    from rpa.hints import command_hint

    monkeypatch.setenv("RPA_LAUNCHER", "./run.sh")
    assert command_hint("status --db q.db") == "./run.sh status --db q.db"
    monkeypatch.setenv("RPA_LAUNCHER", "run.sh")  # `bash run.sh demo`: ./run.sh runs it
    assert command_hint("resume") == "./run.sh resume"
    monkeypatch.delenv("RPA_LAUNCHER")
    monkeypatch.setattr(sys, "argv", ["/no/such/venv/bin/rpa", "demo"])  # rpa not on PATH
    assert command_hint("resume") == "/no/such/venv/bin/rpa resume"
    monkeypatch.setattr(sys, "argv", ["-m"])  # python -m rpa
    assert command_hint("resume") == "rpa resume"


@pytest.mark.timeout(60)
def test_the_wheel_has_the_rpa_command_and_the_demos_papers(tmp_path: Path) -> None:
    """What `pipx install` / `uv tool install` get: built offline (no index, no isolation:
    the dev extra brings setuptools) from a copy of the tree."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "rpa", src / "rpa", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-index",
         "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=50,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("rpa-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    assert re.search(r"^\[console_scripts\]\s*\nrpa = rpa\.cli:main$", scripts, re.MULTILINE)
    samples = {p.name for p in (ROOT / "rpa" / "samples").iterdir()}
    assert {f"rpa/samples/{n}" for n in samples} <= names  # the demo's papers, ATTRIBUTION.md
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "rpa").rglob("*.py")}
    assert modules <= names  # rpa.testing.mirror too: the demo serves the papers with it
