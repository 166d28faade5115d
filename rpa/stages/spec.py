"""A user stage's settings (`StageSpec`) and where they come from.

Defaults < the config file's `[[stage]]` tables < env vars < flags, per stage and per field:

    [[stage]]                              RPA_STAGE="summary=mylab.llm:summarize"
    name = "summary"                       RPA_STAGE_CONCURRENCY="summary=16"
    call = "mylab.llm:summarize"           RPA_STAGE_RATE="summary=50/1m"  (and _KIND,
    kind = "async"                           _TIMEOUT, _VERSION, _AFTER: NAME=VALUE, several
    concurrency = 16                         separated by ';'; after's names by '+')
    rate = "50/1m"                         --stage summary=mylab.llm:summarize
    timeout = 120                          --stage-concurrency summary=16 (and --stage-rate,
    version = "2"                            --stage-kind, --stage-timeout, --stage-version,
    after = ["outcome"]                      --stage-after summary=other; all repeatable)

Nothing here imports the stage's module: that happens when a run starts (rpa.stages.execute).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rpa.errors import ConfigError

__all__ = [
    "FIELDS", "KINDS", "RESERVED", "Given", "StageSpec", "as_stored", "build", "ordered",
    "parse_rate", "resolve_stages", "stage_layers",
]  # fmt: skip

KINDS = ("async", "thread", "process")
#: names a user stage cannot take: rpa's own stages and gates
RESERVED = frozenset({"download", "extract", "outcome", "prefetch", "metadata", "database"})
#: the fields a flag, env var or table may set (besides `name`)
FIELDS = ("call", "kind", "concurrency", "rate", "timeout", "version", "after")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_CALL = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_rate(rate: str, where: str = "rate") -> tuple[int, float]:
    """'N/period' -> (N, seconds): '50/1m', '100/s', '10/2.5s', '1000/1h'."""
    count_text, slash, period_text = rate.strip().partition("/")
    match = re.fullmatch(r"\s*(\d*\.?\d*)\s*([smhd]?)\s*", period_text if slash else "1s")
    try:
        count = int(count_text)
        if match is None:
            raise ValueError
        period = float(match.group(1) or 1) * _UNITS[match.group(2)]
    except ValueError:
        raise ConfigError(
            f"{where}: cannot read {rate!r} (expected N/period: 50/1m, 100/s)"
        ) from None
    if count < 1 or period <= 0:
        raise ConfigError(f"{where}: {rate!r} needs N >= 1 and a period > 0")
    return count, period


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One user stage. `call` is "module:function"; `after` names the stages (or "outcome")
    whose result it needs first."""

    name: str
    call: str
    kind: Literal["async", "thread", "process"] = "async"
    concurrency: int = 4
    rate: str = ""  # "" = no rate limit
    timeout: float = 120.0
    version: str = "1"
    after: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"stage {self.name!r}"
        if not _NAME.match(self.name) or self.name in RESERVED:
            raise ConfigError(
                f"{where}: a name is lowercase letters, digits and _, not one of rpa's own "
                f"({', '.join(sorted(RESERVED))})"
            )
        if not _CALL.match(self.call):
            raise ConfigError(f"{where}: call {self.call!r} is not module:function")
        if self.kind not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.concurrency < 1:
            raise ConfigError(f"{where}: concurrency must be at least 1")
        if self.timeout <= 0:
            raise ConfigError(f"{where}: timeout must be above 0")
        if self.rate:
            parse_rate(self.rate, f"{where}: rate")
        if not self.version:
            raise ConfigError(f"{where}: version must not be empty")

    @property
    def needs(self) -> tuple[str, ...]:
        """The user stages it runs after ("outcome" is where every stage starts)."""
        return tuple(a for a in self.after if a != "outcome")

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        return parse_rate(self.rate) if self.rate else None


def _coerce(name: str, key: str, value: Any, origin: str) -> Any:
    try:
        if key == "concurrency":
            return int(value)
        if key == "timeout":
            return float(value)
        if key == "after":
            items = value if isinstance(value, list | tuple) else str(value).split("+")
            return tuple(str(a).strip() for a in items if str(a).strip())
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{origin}: stage {name!r}: {key}: cannot read {value!r}") from None


def _pairs(values: Iterable[str], origin: str) -> Iterable[tuple[str, str]]:
    for value in values:
        name, equals, rest = value.partition("=")
        if not equals or not name.strip():
            raise ConfigError(f"{origin}: cannot read {value!r} (expected NAME=VALUE)")
        yield name.strip(), rest.strip()


def _tables(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    tables = data.get("stage", (data.get("rpa") or {}).get("stage", []))
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{path}: `stage` must be [[stage]] tables")
    return tables


#: per stage, the fields an invocation gives: field -> (value, where it came from)
Given = dict[str, dict[str, tuple[Any, str]]]


def stage_layers(
    config_path: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Sequence[str]] | None = None,
) -> Given:
    """What the config file's [[stage]] tables, then RPA_STAGE* env vars, then flags
    (`flags[field]`: the NAME=VALUE strings of --stage / --stage-<field>; "call" for --stage)
    say of each stage, field by field, each with where it came from (the later wins)."""
    found: Given = {}
    for table in _tables(config_path):
        name = str(table.get("name", ""))
        unknown = set(table) - {"name", *FIELDS}
        if unknown:
            raise ConfigError(f"{config_path}: stage {name!r}: unknown key {sorted(unknown)[0]!r}")
        found.setdefault(name, {}).update(
            {k: (_coerce(name, k, v, str(config_path)), str(config_path))
             for k, v in table.items() if k != "name"}
        )  # fmt: skip
    for key in FIELDS:
        var = "RPA_STAGE" if key == "call" else f"RPA_STAGE_{key.upper()}"
        if env.get(var):
            for name, value in _pairs(env[var].split(";"), f"${var}"):
                found.setdefault(name, {})[key] = (_coerce(name, key, value, f"${var}"), f"${var}")
    for key in FIELDS:
        flag = "--stage" if key == "call" else f"--stage-{key}"
        for name, value in _pairs((flags or {}).get(key, ()), flag):
            found.setdefault(name, {})[key] = (_coerce(name, key, value, flag), flag)
    return found


def build(name: str, values: Mapping[str, Any]) -> StageSpec:
    """The StageSpec of `values` (field -> value); a stage with no call is an error."""
    if "call" not in values:
        raise ConfigError(f"stage {name!r} has settings but no call (module:function)")
    return StageSpec(name=name, **{k: _coerce(name, k, v, "stage") for k, v in values.items()})


def resolve_stages(
    config_path: Path | None,
    env: Mapping[str, str],
    flags: Mapping[str, Sequence[str]] | None = None,
) -> tuple[StageSpec, ...]:
    """The stages the config file, env vars and flags name (`stage_layers`), in the order
    they run (`ordered`); without the queue's stored ones (rpa.stages.remember adds those)."""
    layers = stage_layers(config_path, env, flags)
    return ordered(
        [build(name, {k: v for k, (v, _) in fields.items()}) for name, fields in layers.items()]
    )


def as_stored(spec: StageSpec) -> dict[str, Any]:
    """`spec` as the queue keeps it (JSON: `after` a list)."""
    return {
        "call": spec.call, "kind": spec.kind, "concurrency": spec.concurrency,
        "rate": spec.rate, "timeout": spec.timeout, "version": spec.version,
        "after": list(spec.after),
    }  # fmt: skip


def ordered(specs: Sequence[StageSpec]) -> tuple[StageSpec, ...]:
    """`specs` with each stage after those it needs; an unknown or circular `after` is an
    error."""
    by_name = {s.name: s for s in specs}
    for s in specs:
        for need in s.needs:
            if need not in by_name:
                raise ConfigError(f"stage {s.name!r}: after {need!r}: no such stage")
    done: list[StageSpec] = []
    seen: set[str] = set()

    def visit(s: StageSpec, path: tuple[str, ...]) -> None:
        if s.name in path:
            raise ConfigError(f"stages run after each other in a circle: {' -> '.join(path)}")
        if s.name in seen:
            return
        for need in s.needs:
            visit(by_name[need], (*path, s.name))
        seen.add(s.name)
        done.append(s)

    for s in specs:
        visit(s, ())
    return tuple(done)
