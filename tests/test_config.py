"""Settings precedence: defaults < config file < environment < flags, and validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rpa.config import Settings, knob_fields, load_settings
from rpa.errors import ConfigError
from rpa.rates import parse_rate_limits


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_any_source(tmp_path: Path) -> None:
    resolved = load_settings(env={}, flags={}, cwd=tmp_path)
    settings = resolved.settings
    assert resolved.config_path is None and resolved.origins == {}
    assert settings == Settings()
    assert settings.workers == 200
    assert settings.pdf_url == "https://export.arxiv.org/pdf/{id}"


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "workers = 7\ndownload_concurrency = 9\nread_timeout = 3\n")
    env = {"RPA_DOWNLOAD_CONCURRENCY": "11", "RPA_READ_TIMEOUT": "4.5"}
    flags = {"read_timeout": 5.5}
    resolved = load_settings(config_path=cfg, env=env, flags=flags, cwd=tmp_path)
    settings = resolved.settings
    assert resolved.config_path == cfg
    assert settings.workers == 7  # file beats default
    assert settings.download_concurrency == 11  # env beats file
    assert settings.read_timeout == 5.5  # flag beats env
    # where each value not left at its default came from (a queue setting's conflict names it)
    assert resolved.origins == {
        "workers": f"{cfg} (workers)",
        "download_concurrency": "$RPA_DOWNLOAD_CONCURRENCY",
        "read_timeout": "--read-timeout",
    }


def test_config_found_by_env_then_cwd(tmp_path: Path) -> None:
    write(tmp_path / "rpa.toml", "workers = 3\n")
    other = write(tmp_path / "other.toml", "[rpa]\nworkers = 4\n")
    assert load_settings(env={}, cwd=tmp_path).settings.workers == 3
    assert load_settings(env={"RPA_CONFIG": str(other)}, cwd=tmp_path).settings.workers == 4


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"flags": {"workers": 0}}, "workers must be at least 1"),
        ({"flags": {"extract_pool": "fork"}}, "extract_pool must be one of"),
        ({"env": {"RPA_WORKERS": "many"}}, "RPA_WORKERS: workers: not a whole number: 'many'"),
        ({"env": {"RPA_RETRY_BASE": "soon"}}, "retry_base: not a number: 'soon'"),
        ({"env": {"RPA_WROKERS": "5"}}, "names no knob \\(did you mean 'RPA_WORKERS'\\?\\)"),
        ({"env": {"RPA_ZZZ": "5"}}, "RPA_ZZZ names no knob$"),
        ({"flags": {"pdf_url": "http://x/pdf"}}, "{id}"),
        ({"flags": {"pdf_url": "ftp://x/{id}"}}, "must start with http://, https:// or file://"),
        ({"flags": {"pdf_url": "http://x/{id}?x={y}"}}, "no placeholder but {id}"),
        ({"flags": {"pdf_url": "http://x/{id}/{0.__class__}"}}, "no placeholder but {id}"),
        ({"flags": {"pdf_url": "x/{id}"}}, "must start with"),
        ({"flags": {"pdf_url": "http:///{id}"}}, "names no host"),
        ({"flags": {"follow_redirects": "sometimes"}}, "follow_redirects must be one of"),
        ({"flags": {"rate_limits": "a.org=fast"}}, "rate_limits: cannot read 'a.org=fast'"),
        ({"flags": {"rate_limits": "=4/1s"}}, "needs a host"),
        ({"flags": {"metadata_rate": "foo"}}, "metadata_rate: cannot read 'foo'"),
        ({"flags": {"metadata_rate": "0/3s"}}, "metadata_rate: '0/3s' needs N >= 1"),
        ({"flags": {"progress": "maybe"}}, "not a boolean"),
        # junk numbers that passed and then crashed a run, stalled it, or filled the memory
        ({"flags": {"db_lock_timeout": "nan"}}, "db_lock_timeout must be a finite number, got nan"),
        ({"env": {"RPA_MIN_FREE_MB": "inf"}}, "min_free_mb must be a finite number, got inf"),
        ({"env": {"RPA_WORKERS": "99999999999999999999"}}, "workers must be at most 100,000"),
        ({"flags": {"download_concurrency": "20000"}}, "download_concurrency must be at most"),
        ({"flags": {"max_attempts": str(10**12)}}, "max_attempts must be at most 1,000,000,000"),
        ({"flags": {"workers": 1.5}}, "workers: not a whole number: 1.5"),
        ({"flags": {"retry_base": "1e300"}}, "retry_base must be at most 1,000,000,000"),
    ],
)
def test_bad_values_are_config_errors(source: dict[str, dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_settings(env=source.get("env", {}), flags=source.get("flags", {}))  # type: ignore[arg-type]


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "wokers = 3\n")
    with pytest.raises(ConfigError, match="unknown key 'wokers' \\(did you mean 'workers'\\?\\)"):
        load_settings(config_path=cfg, env={})


def test_broken_toml_is_an_error(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "workers = = 3\n")
    with pytest.raises(ConfigError, match=r"c\.toml"):
        load_settings(config_path=cfg, env={})


def test_a_config_file_not_in_utf8_is_an_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes("workers = 3\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"c\.toml is not UTF-8 text \(TOML is\)"):
        load_settings(config_path=cfg, env={})


def test_env_booleans_and_paths(tmp_path: Path) -> None:
    env = {"RPA_PROGRESS": "no", "RPA_DB": "~/q.db"}
    settings = load_settings(env=env, cwd=tmp_path).settings
    assert settings.progress is False
    assert settings.db == str(Path("~/q.db").expanduser())
    url = "postgresql://rpa@db.lab:5432/rpa"
    assert load_settings(env={"RPA_DB": url}, cwd=tmp_path).settings.db == url


def test_rate_limit_spec() -> None:
    assert parse_rate_limits("export.arxiv.org=4/1s, Example.org=10/2.5s,c.org=3") == {
        "export.arxiv.org": (4, 1.0),
        "example.org": (10, 2.5),
        "c.org": (3, 1.0),
    }
    assert parse_rate_limits("") == {}


def test_example_config_lists_every_knob_with_its_default() -> None:
    """config.example.toml must stay true to the code."""
    import re
    import tomllib

    example = Path(__file__).parent.parent / "config.example.toml"
    text = example.read_text()
    keys = re.compile(r"^#? ?[a-z_]+ = ")
    uncommented = "\n".join(line.lstrip("# ") for line in text.splitlines() if keys.match(line))
    values = tomllib.loads(uncommented)
    for f in knob_fields():
        assert f.name in values, f"config.example.toml lacks {f.name}"
        default = f.default
        shown = values[f.name]
        assert str(shown) == str(default), f"{f.name}: example says {shown!r}, code {default!r}"


@pytest.mark.parametrize(
    ("given", "opened"),
    [
        ("queue.db", "queue.db"),
        ("sqlite:///queue.db", "queue.db"),
        ("sqlite:////var/lib/rpa/q.db", "/var/lib/rpa/q.db"),
        ("postgresql://rpa@db/rpa", "postgresql://rpa@db/rpa"),
        ("postgres://rpa@db/rpa", "postgresql://rpa@db/rpa"),
        ("postgresql+psycopg://rpa@db/rpa", "postgresql://rpa@db/rpa"),
        ("PostgreSQL://rpa@db/rpa", "postgresql://rpa@db/rpa"),
    ],
)
def test_db_accepts_exactly_a_path_sqlite_urls_and_postgresql_urls(given: str, opened: str) -> None:
    assert load_settings(env={}, flags={"db": given}).settings.db == opened
    assert Settings(db=given).db == opened  # the library's own entry, not only the CLI's


@pytest.mark.parametrize("given", ["mysql://x/q", "sqlite://q.db", "http://db/q", "redis://x"])
def test_any_other_db_scheme_is_refused_naming_the_forms(given: str) -> None:
    with pytest.raises(ConfigError, match="postgresql://") as caught:
        load_settings(env={}, flags={"db": given})
    assert repr(given) in str(caught.value)


def test_a_mistyped_db_url_creates_no_sqlite_file_and_exits_2(tmp_path: Path) -> None:
    """Before, `postgresql+psycopg://...` or `mysql://...` became a SQLite file in folders
    named after the URL: in a fleet, a private queue with its own politeness budget."""
    ids = tmp_path / "ids.txt"
    ids.write_text("2301.00001\n")
    for command in (["status"], ["run", str(ids)]):
        result = subprocess.run(
            [sys.executable, "-m", "rpa", *command, "--db", "mysql://rpa@db/rpa"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "not a queue database rpa knows" in result.stderr
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.txt"]
