"""The commands on a PostgreSQL queue, as a user types them: URLs, passwords kept out of
messages, migrate, a missing extra, an empty database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from conftest import Cli, sample_pdfs, write_ids

from rpa.queue.postgres_schema import SCHEMA_VERSION
from rpa.testing.mirror import Mirror


def test_every_command_works_on_a_postgres_queue(
    tmp_path: Path, postgres_db: Callable[[], str]
) -> None:
    url = postgres_db()
    paper = sample_pdfs()[0]
    with Mirror({"p": paper}) as mirror:
        cli = Cli(tmp_path, mirror.url_template, url)
        # an empty database is no queue yet: status, export, retry, resume say so
        for args in (["status"], ["export"], ["retry"], ["resume"]):
            result = cli.run(*args, "--db", url)
            assert result.returncode == 2 and "no rpa queue in" in result.stderr, args
        migrate = cli.run("migrate", "--db", url)
        assert migrate.returncode == 2 and "not an rpa queue (schema 0)" in migrate.stderr
        ids = write_ids(tmp_path / "ids.txt", ["ext:p", "ext:missing"])
        run = cli.run("run", str(ids), *cli.knobs(progress=False, max_attempts=1))
        assert run.returncode == 1, run.stdout + run.stderr  # one 404
        assert f"next: rpa status --db {url}" in run.stdout
        status = cli.status()
        assert status["database"] == url and status["totals"]["done"] == 1
        assert status["settings"]["pdf_url"] == mirror.url_template
        exported = cli.run("export", "--db", url)
        assert [json.loads(line)["id"] for line in exported.stdout.splitlines()] == ["ext:p"]
        retried = cli.run("retry", "--db", url, "--kind", "not_found")
        assert retried.returncode == 0 and "not_found" in retried.stdout
        assert cli.run("migrate", "--db", url).stdout.strip() == (
            f"{url}: schema {SCHEMA_VERSION}, already current"
        )
        resumed = cli.run("resume", "--db", url, "--no-progress")
        assert resumed.returncode == 1 and cli.count("stage = 'failed'") == 1


def test_a_password_never_shows_and_a_missing_extra_is_one_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path, "unused")
    url = "postgresql://rpa:s3cret@127.0.0.1:9/rpa"  # nobody listens on port 9
    result = cli.run("status", "--db", url)
    assert result.returncode == 2 and "cannot connect to" in result.stderr
    assert "s3cret" not in result.stderr and "rpa:***@127.0.0.1:9" in result.stderr
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoPsycopg:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'psycopg':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoPsycopg())\n"
    )
    ids = write_ids(tmp_path / "ids.txt", ["2301.00001"])
    result = cli.run("run", str(ids), "--db", url, PYTHONPATH=str(block))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "rpa[postgres]" in result.stderr, result.stderr
