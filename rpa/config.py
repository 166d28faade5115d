"""Settings: one frozen dataclass, one precedence rule.

Every knob is a field of `Settings` with a named default. The same field is a flag
(`--download-concurrency`), an env var (`RPA_DOWNLOAD_CONCURRENCY`) and a key in the config TOML
(`download_concurrency = 64`). Precedence is written once, in `load_settings`: defaults <
config file < environment < flags.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from rpa.dbname import normalize_db, refuse_folder_db
from rpa.errors import ConfigError
from rpa.ids import validate_url_template
from rpa.machine import available_cpus
from rpa.rates import parse_rate, parse_rate_limits

__all__ = [
    "DEFAULT_CONFIG_NAME",
    "ENV_PREFIX",
    "Resolved",
    "Settings",
    "knob_choices",
    "knob_fields",
    "load_settings",
    "normalize_db",
]

ENV_PREFIX = "RPA_"
#: RPA_ variables that are no knob: the config file's path, tracebacks for rpa's bugs, and how
#: the user launched rpa (run.sh sets it; the hints name it: rpa.hints), and what a group
#: (--processes) tells its processes (rpa.run.processes)
NOT_KNOBS = frozenset(
    f"{ENV_PREFIX}{name}" for name in ("CONFIG", "DEBUG", "LAUNCHER", "GROUP_REPORT", "GROUP_SIZE")
)
#: read from the working directory when neither --config nor RPA_CONFIG names a file
DEFAULT_CONFIG_NAME = "rpa.toml"
ARXIV_URL = "https://export.arxiv.org/pdf/{id}"
ARXIV_API = "https://export.arxiv.org/api/query"
# arXiv's bulk-data page allows "bursts of 4 requests per second with a 1 second sleep per
# burst" (https://info.arxiv.org/help/bulk_data.html). Read conservatively: a burst of 4 may
# take its whole second, then comes a second with none, so no 2-second window holds more than
# 4 requests: "host=COUNT/PERIODs" = 4/2s (see rpa.hosts.rate.RateGate for how a window is kept).
ARXIV_RATE_LIMITS = "arxiv.org=4/2s,export.arxiv.org=4/2s"


#: the largest value of a number knob that names none of its own (a typo's 10**20 workers
#: filled the memory before anything was said)
INT_CEILING = 10**9


def _knob(
    default: Any, help: str, *, minimum: float | None = None, maximum: float | None = None
) -> Any:
    return field(default=default, metadata={"help": help, "min": minimum, "max": maximum})


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob rpa has. Build with `load_settings`; never mutate (use `dataclasses.replace`)."""

    db: str = _knob(
        "rpa.db",
        "queue database: a SQLite file (or sqlite:///path), or a postgresql:// URL; nothing else",
    )
    out: Path = _knob(Path("rpa-data"), "output folder: PDFs, texts, outcome JSON")
    workers: int = _knob(200, "logical workers on the event loop", minimum=1, maximum=100_000)
    download_concurrency: int = _knob(
        64, "download gate: downloads at once", minimum=1, maximum=10_000
    )
    prefetch: int = _knob(
        64,
        "papers downloading or downloaded ahead of their extraction, at most (prefetch gate)",
        minimum=1,
        maximum=100_000,
    )
    extract_concurrency: int = _knob(
        0, "extract gate: extractions at once (0 = --extract-workers)", minimum=0, maximum=10_000
    )
    extract_workers: int = _knob(
        0, "extraction processes (0 = the CPUs rpa may use: affinity, cgroup quota)",
        minimum=0, maximum=4096,
    )  # fmt: skip
    processes: int = _knob(
        1, "conductor processes on the queue, one live table (each: its share of "
        "--extract-workers, --workers, --download-concurrency, --prefetch)", minimum=1,
        maximum=1024,
    )  # fmt: skip
    extract_pool: Literal["process", "thread"] = _knob("process", "extraction pool kind")
    extractor: Literal["pypdf", "pdfium"] = _knob(
        "pypdf", "text extractor (pdfium needs the rpa[pdfium] extra)"
    )
    extract_timeout: float = _knob(
        120.0, "seconds one PDF may take before its process is killed", minimum=0.01
    )
    extract_max_mb: int = _knob(
        2048, "address-space cap of one extraction process, MiB (0 = none)", minimum=0
    )
    extract_nice: int = _knob(10, "niceness of extraction processes (the loop keeps its core)")
    extract_recycle_mb: int = _knob(
        1024, "replace an extraction process whose RSS stays above this after a paper, MiB "
        "(0 = never)", minimum=0,
    )  # fmt: skip
    memory_pause: float = _knob(
        0.80,
        "no new extraction or download starts above this fraction of the memory limit",
        minimum=0.01,
    )
    memory_resume: float = _knob(
        0.70, "work resumes below this fraction of the memory limit", minimum=0.0
    )
    memory_kill: float = _knob(
        0.95, "above this fraction, the largest extraction process is killed and its paper "
        "retried", minimum=0.01,
    )  # fmt: skip
    poison_after: int = _knob(
        2,
        "quarantine a PDF (kind poison) after it killed this many processes running alone",
        minimum=1,
    )
    pdf_url: str = _knob(ARXIV_URL, "PDF URL template; {id} is the arXiv ID with version")
    pdf_tar: str = _knob(
        "", "arXiv bulk PDF tars to read papers from instead of --pdf-url (a glob) ('' = none)"
    )
    max_pdf_mb: float = _knob(100.0, "largest PDF accepted, MiB", minimum=0.001)
    metadata: Literal["auto", "arxiv-api", "file", "off"] = _knob(
        "auto", "arXiv's metadata joined to each record: from the export API, from "
        "--metadata-file, or off (auto: the API for arXiv IDs from arXiv's own PDF host, "
        "the file when one is given, else off)",
    )  # fmt: skip
    metadata_url: str = _knob(ARXIV_API, "arXiv export API query URL (the metadata stage)")
    metadata_file: str = _knob(
        "", "arXiv's metadata snapshot (JSON lines, .gz too) to join offline ('' = none)"
    )
    metadata_batch: int = _knob(100, "IDs per export-API request", minimum=1)
    metadata_rate: str = _knob(
        "1/3s", "export-API requests 'N/Ts' for the whole fleet (arXiv: 1 every 3 s)"
    )
    metadata_wait: float = _knob(
        1800.0, "longest wait for arXiv's metadata API while it does not answer, seconds; then "
        "the run stops as interrupted (rpa resume continues)", minimum=0,
    )  # fmt: skip
    connect_timeout: float = _knob(10.0, "HTTP connect timeout, seconds", minimum=0.01)
    read_timeout: float = _knob(60.0, "HTTP read timeout between bytes, seconds", minimum=0.01)
    download_timeout: float = _knob(
        600.0, "longest one download may take in all, seconds (then it is retried)", minimum=0.01
    )
    follow_redirects: Literal["same-site", "any", "off"] = _knob(
        "same-site", "redirects followed: within the same site, to any host, or none"
    )
    max_connections: int = _knob(0, "HTTP connection pool size (0 = download gate)", minimum=0)
    http_stack: Literal["aiohttp", "httpx"] = _knob(
        "aiohttp", "HTTP/1.1 under httpx's API: aiohttp's (C parser, less CPU) or httpx's own"
    )
    mailto: str = _knob("", "contact address put in the User-Agent (arXiv asks for one)")
    user_agent: str = _knob("", "User-Agent (default: rpa/VERSION (+mailto))")
    rate_limits: str = _knob(
        ARXIV_RATE_LIMITS,
        "per-host caps 'host=N/Ts,...': at most N requests in any T s ('' = none)",
    )
    max_attempts: int = _knob(5, "attempts per paper before it fails for good", minimum=1)
    first_misses: int = _knob(
        20, "stop the run when the PDF source answers 'not found' or not a PDF (an HTML "
        "page) for each of its first N papers and serves none (a wrong --pdf-url); 0 = never",
        minimum=0,
    )  # fmt: skip
    retry_base: float = _knob(2.0, "first retry delay, seconds (doubles, with jitter)", minimum=0)
    retry_max: float = _knob(600.0, "longest retry delay, seconds", minimum=0)
    lease_seconds: float = _knob(120.0, "job lease length; renewed while working", minimum=1)
    heartbeat_seconds: float = _knob(5.0, "run heartbeat interval", minimum=0.1)
    db_wait: float = _knob(
        1800.0, "longest wait for an unavailable queue database, seconds; then the run stops "
        "as interrupted (rpa resume continues)", minimum=0,
    )  # fmt: skip
    db_lock_timeout: float = _knob(
        30.0, "longest one database statement waits for a lock, seconds (SQLite's busy timeout, "
        "PostgreSQL's lock_timeout); then it waits and is tried again", minimum=0.01,
    )  # fmt: skip
    grace: float = _knob(10.0, "seconds in-flight work may finish after Ctrl-C", minimum=0)
    min_free_mb: float = _knob(500.0, "stop claiming when free space under --out drops below")
    keep_pdf: Literal["always", "failed", "never"] = _knob("always", "keep downloaded PDFs")
    progress: bool = _knob(True, "live table on a terminal")
    log_format: Literal["text", "json"] = _knob("text", "progress lines when not a terminal")
    metrics_file: str = _knob("", "write OpenMetrics text here every few seconds ('' = off)")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            minimum, maximum = f.metadata.get("min"), f.metadata.get("max")
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value}")
            if isinstance(value, int | float) and not isinstance(value, bool) and maximum is None:
                maximum = INT_CEILING  # (a float's too: retry_base 1e300 broke the clock)
            if minimum is not None and value < minimum:
                raise ConfigError(f"{f.name} must be at least {minimum}, got {value}")
            if maximum is not None and value > maximum:
                raise ConfigError(f"{f.name} must be at most {maximum:,}, got {value:,}")
            choices = knob_choices(f)
            if choices and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(choices)}, got {value!r}")
        validate_url_template(self.pdf_url)
        object.__setattr__(self, "db", normalize_db(self.db))
        if not self.memory_resume < self.memory_pause <= self.memory_kill <= 1.0:
            raise ConfigError(
                "memory thresholds must satisfy memory_resume < memory_pause <= memory_kill "
                f"<= 1, got {self.memory_resume} / {self.memory_pause} / {self.memory_kill}"
            )
        if self.retry_max < self.retry_base:
            raise ConfigError("retry_max must be at least retry_base")
        parse_rate_limits(self.rate_limits)
        parse_rate(self.metadata_rate)
        if self.metadata == "file" and not self.metadata_file:
            raise ConfigError("metadata 'file' needs --metadata-file PATH")

    @property
    def metadata_mode(self) -> str:
        """What `metadata = auto` means for these settings."""
        if self.metadata != "auto":
            return self.metadata
        if self.metadata_file:
            return "file"
        return "arxiv-api" if self.pdf_url == ARXIV_URL and not self.pdf_tar else "off"

    @property
    def network(self) -> bool:
        """PDFs come over the network (HTTP), not from local files or bulk tars."""
        return not (self.pdf_tar or self.pdf_url.lower().startswith("file://"))

    @property
    def pdf_host(self) -> str:
        """The host of --pdf-url, where the queue's papers come from ('' for local files)."""
        return urlsplit(self.pdf_url.replace("{id}", "x")).hostname or ""

    @property  # (the resolved values: a 0 means "derive it")
    def extract_workers_resolved(self) -> int:
        return self.extract_workers or available_cpus()

    @property
    def extract_concurrency_resolved(self) -> int:
        return self.extract_concurrency or self.extract_workers_resolved

    @property
    def max_connections_resolved(self) -> int:
        return self.max_connections or self.download_concurrency


@functools.cache
def _choices() -> dict[str, tuple[str, ...]]:
    """Each Literal[...] knob's allowed values (get_type_hints once: ~12 ms a Settings)."""
    hints = get_type_hints(Settings)
    return {k: tuple(get_args(h)) for k, h in hints.items() if get_origin(h) is Literal}


def knob_choices(f: dataclasses.Field[Any]) -> tuple[str, ...]:
    """The allowed values of a Literal[...] knob, () for any other."""
    return _choices().get(f.name, ())


def knob_fields() -> list[dataclasses.Field[Any]]:
    """The fields of Settings, in declaration order (the CLI builds its options from these)."""
    return list(dataclasses.fields(Settings))


def _field_kind(f: dataclasses.Field[Any]) -> str:
    return str(f.type).split("[")[0]


def _coerce(f: dataclasses.Field[Any], value: Any, origin: str) -> Any:
    """Turn a raw value from a file, env var or flag into the field's type."""
    kind = _field_kind(f)
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("booleans are not numbers")
            if isinstance(value, float) and not value.is_integer():  # TOML's 1.5
                raise ValueError(f"not a whole number: {value!r}")
            try:
                return int(value)
            except (ValueError, OverflowError):
                raise ValueError(f"not a whole number: {value!r}") from None
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError("booleans are not numbers")
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"not a number: {value!r}") from None
        if kind == "Path":
            return Path(str(value)).expanduser()
        if f.name == "db":
            text = normalize_db(str(value))
            if "://" in text:
                return text
            refuse_folder_db(text, value, origin)
            return str(Path(text).expanduser())
        return str(value)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {f.name}: {exc}") from None


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (TOML is)") from None
    # Allow either flat keys or a [rpa] table; dashes or underscores.
    if isinstance(data.get("rpa"), dict):
        data = data["rpa"]
    return {k.replace("-", "_"): v for k, v in data.items() if k != "stage"}  # rpa.stages


@dataclass(frozen=True, slots=True)
class Resolved:
    """The settings, the config file used, and where each explicitly set value came from."""

    settings: Settings
    config_path: Path | None
    #: knob name -> its source ("--pdf-url", "$RPA_PDF_URL", "rpa.toml"), for every knob
    #: not left at its default
    origins: dict[str, str]


def load_settings(
    *,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Resolved:
    """Resolve every knob: defaults < config file < environment < flags.

    `flags` holds only the values the user typed (not the CLI's defaults). The config file is
    `config_path`, else `$RPA_CONFIG`, else `./rpa.toml` if it exists. Unknown keys in the
    file or `RPA_` env vars that name no knob are errors: a typo must not be silently ignored.
    """
    env = os.environ if env is None else env
    flags = flags or {}
    fields = {f.name: f for f in knob_fields()}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}

    if config_path is None and env.get(f"{ENV_PREFIX}CONFIG"):
        config_path = Path(env[f"{ENV_PREFIX}CONFIG"])
    if config_path is None:
        candidate = (cwd or Path.cwd()) / DEFAULT_CONFIG_NAME
        config_path = candidate if candidate.is_file() else None
    if config_path is not None:
        for key, raw in _read_config_file(config_path).items():
            if key not in fields:
                raise ConfigError(f"{config_path}: unknown key {key!r}{_did_you_mean(key, fields)}")
            values[key] = _coerce(fields[key], raw, str(config_path))
            origins[key] = f"{config_path} ({key})"

    for key, raw in env.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_KNOBS or key.startswith("RPA_STAGE"):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in fields:
            close = _did_you_mean(name, fields, ENV_PREFIX)
            raise ConfigError(f"environment: {key} names no knob{close}")
        values[name] = _coerce(fields[name], raw, f"${key}")
        origins[name] = f"${key}"

    for name, raw in flags.items():
        if name not in fields:
            raise ConfigError(f"unknown option {name}")
        flag = f"--{name.replace('_', '-')}"
        values[name] = _coerce(fields[name], raw, flag)
        origins[name] = flag

    return Resolved(Settings(**values), config_path, origins)


def _did_you_mean(name: str, names: Iterable[str], env_prefix: str = "") -> str:
    """The hint for a mistyped knob: " (did you mean 'workers'?)" ('RPA_WORKERS', env)."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    right = (env_prefix + close[0].upper() if env_prefix else close[0]) if close else ""
    return f" (did you mean {right!r}?)" if right else ""
