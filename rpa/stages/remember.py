"""The queue's stages: the user's stages are kept with the queue, as its other settings are.

Each stage is one row of the queue's settings (`queue_settings`, key `stage.<name>`, its
fields as JSON), so `rpa resume` with no stage named runs the queue's stages, and a fleet's
processes run the same ones. What an invocation names (config file, env vars, flags:
rpa.stages.spec.stage_layers) is laid over them, field by field:

- a stage the queue does not have is added (it needs a call);
- `call`, `kind`, `version` and `after` say what a stage's results are: a value that
  contradicts the queue's is refused, naming both, unless --reconfigure (as the queue's other
  settings are); a new version then re-runs the stage on every done paper;
- `concurrency`, `rate` and `timeout` say how it runs: a new value is used and kept (said,
  and recorded in `settings_changes`);
- `--drop-stage NAME` takes a stage out of the queue's (its results stay in the records, the
  export and `rpa status`); naming it in the same invocation, or dropping one another stage
  runs after, is refused.

`plan` decides (pure, no queue); `keep` writes the plan, in one transaction. Blocking: before
a run (rpa.run.prepare).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rpa.errors import ConfigError
from rpa.queue import catalog
from rpa.queue.store import QueueStore
from rpa.stages.spec import FIELDS, Given, StageSpec, as_stored, build, ordered

__all__ = ["KEY", "StagePlan", "StageRequest", "keep", "plan", "stored_stages"]

#: the queue setting that holds a stage: KEY + name
KEY = "stage."
#: the fields that say what a stage's results are: a change needs --reconfigure
MEANING = ("call", "kind", "version", "after")


@dataclass(frozen=True, slots=True)
class StageRequest:
    """What one invocation says of the stages."""

    given: Given = field(default_factory=dict)  # per stage: field -> (value, origin)
    drop: tuple[str, ...] = ()  # --drop-stage


@dataclass(frozen=True, slots=True)
class StagePlan:
    stages: tuple[StageSpec, ...]  # what this run runs, in order
    to_store: dict[str, dict[str, Any]]  # name -> fields, new or changed
    to_drop: tuple[str, ...]
    notes: list[str]


def stored_stages(store: QueueStore) -> dict[str, dict[str, Any]]:
    """The queue's stages: name -> fields (as `as_stored` made them)."""
    return {
        key[len(KEY) :]: value
        for key, value in catalog.queue_settings(store).items()
        if key.startswith(KEY) and isinstance(value, dict)
    }


def _show(value: Any) -> str:
    return "+".join(value) if isinstance(value, list | tuple) else repr(value)


def plan(
    stored: Mapping[str, Mapping[str, Any]], request: StageRequest, *, reconfigure: bool
) -> StagePlan:
    """The stages to run and what to keep of them (see the module doc). ConfigError on a
    contradiction (all of them, named), an unknown --drop-stage, or a stage another needs."""
    notes: list[str] = []
    conflicts: list[str] = []
    to_store: dict[str, dict[str, Any]] = {}
    drop = tuple(dict.fromkeys(request.drop))
    for name in drop:
        if name in request.given:
            origins = sorted({origin for _, origin in request.given[name].values()})
            raise ConfigError(
                f"--drop-stage {name}: {', '.join(origins)} names it too; leave it out there"
            )
        if name not in stored:
            have = ", ".join(sorted(stored)) or "none"
            raise ConfigError(f"--drop-stage {name}: the queue has no such stage (it has: {have})")
    specs: dict[str, StageSpec] = {}
    for name in [*stored, *(n for n in request.given if n not in stored)]:
        if name in drop:
            continue
        old = {k: v for k, v in stored.get(name, {}).items() if k in FIELDS}
        given = request.given.get(name, {})
        values = {**old, **{k: v for k, (v, _) in given.items()}}
        spec = specs[name] = build(name, values)
        new = as_stored(spec)
        if not old:
            to_store[name] = new
            notes.append(f"stage {name}: {spec.call} ({spec.kind}) kept with the queue: a "
                         "resume runs it")  # fmt: skip
            continue
        before = as_stored(build(name, old))
        changed = [k for k in FIELDS if before[k] != new[k]]
        for k in changed:
            origin = given[k][1] if k in given else "the queue"
            change = f"{k}: the queue has {_show(before[k])}, {origin} says {_show(new[k])}"
            if k in MEANING and not reconfigure:
                conflicts.append(f"stage {name}: {change}")
            elif k in MEANING:
                again = " (it runs again on every done paper)" if k == "version" else ""
                notes.append(f"stage {name}: {k} {_show(before[k])} -> {_show(new[k])} "
                             f"(--reconfigure; recorded){again}")  # fmt: skip
            else:
                notes.append(f"stage {name}: {k} {_show(before[k])} -> {_show(new[k])} (kept "
                             "with the queue)")  # fmt: skip
        if changed:
            to_store[name] = new
    if conflicts:
        raise ConfigError(
            "this queue's stages were set up otherwise:\n  " + "\n  ".join(conflicts)
            + "\nA stage's call, kind, version and after say what its results are (a new "
            "version runs it again on every done paper). Leave them out to use the queue's, "
            "or pass --reconfigure to change them (the change is recorded)."
        )  # fmt: skip
    for name in drop:
        users = [s.name for s in specs.values() if name in s.needs]
        if users:
            raise ConfigError(
                f"--drop-stage {name}: stage {users[0]} runs after it; drop that one too"
            )
        notes.append(f"stage {name}: dropped from the queue's stages (its results stay in the "
                     "records, the export and rpa status)")  # fmt: skip
    kept = [n for n in stored if n not in drop and n not in request.given]
    if kept:
        notes.append(f"the queue's stages: {', '.join(kept)} (--drop-stage NAME to stop one)")
    return StagePlan(ordered(list(specs.values())), to_store, drop, notes)


def keep(store: QueueStore, p: StagePlan, run_id: str, now: float) -> None:
    """Write `p`: new and changed stages, dropped ones removed (each change recorded)."""
    catalog.store_queue_settings(
        store, {KEY + name: fields for name, fields in p.to_store.items()}, run_id, now
    )
    _drop(store, (KEY + name for name in p.to_drop), run_id, now)


def _drop(store: QueueStore, keys: Iterable[str], run_id: str, now: float) -> None:
    sql = store.sql
    with sql.transaction():
        for key in keys:
            row = sql.one("SELECT value FROM queue_settings WHERE key = ?", (key,))
            if row is None:
                continue
            sql.execute(
                "INSERT INTO settings_changes (changed_at, key, old_value, new_value, run_id) "
                "VALUES (?, ?, ?, ?, ?)",
                (now, key, row["value"], json.dumps(None), run_id),
            )
            sql.execute("DELETE FROM queue_settings WHERE key = ?", (key,))
