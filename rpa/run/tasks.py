"""The run's background tasks, named: a bug in one is reported by which task, which exception
and where, never as an anonymous "ExceptionGroup: unhandled errors in a TaskGroup".

    start(background, "heartbeat", heartbeat.run())   # a TaskGroup's task, named
    ...
    except Exception as exc:
        reason = describe_crash(exc)   # "heartbeat: KeyError: 'x' (rpa/run/heartbeat.py:57)"

An RpaError (a condition the run handles: the database gone past --db-wait, say) passes
through as it is: it already says what happened.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Awaitable, Coroutine
from pathlib import Path
from typing import Any

from rpa.errors import RpaError, RunCrashed

__all__ = ["describe", "describe_crash", "named", "start"]

_HERE = Path(__file__).resolve()
_PACKAGE = _HERE.parent.parent


def _where(exc: BaseException) -> str:
    """Where the exception was raised: the innermost frame of rpa's own code it came through
    (else the innermost of all), as a path and a line ('' if it has no traceback)."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() != _HERE
    ]
    if not frames:
        return ""
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    frame = (ours or frames)[-1]
    path = Path(frame.filename).resolve()
    shown = path.relative_to(_PACKAGE.parent) if ours else path.name
    return f"{shown}:{frame.lineno}"


def describe(exc: BaseException) -> str:
    """Which exception, and where: "KeyError: 'x' (rpa/run/heartbeat.py:57)"."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = _where(exc)
    return f"{text} ({where})" if where else text


async def named(name: str, work: Awaitable[None]) -> None:
    """Await `work`; an exception that is not an RpaError becomes a RunCrashed that names
    the task, the exception and where it was raised."""
    try:
        await work
    except RpaError:
        raise
    except Exception as exc:
        raise RunCrashed(f"the {name} task failed: {describe(exc)}") from exc


def describe_crash(exc: BaseException) -> str:
    """What ended the run, every leaf of an ExceptionGroup said (each once)."""
    if isinstance(exc, BaseExceptionGroup):
        said = dict.fromkeys(describe_crash(sub) for sub in exc.exceptions)
        return "; ".join(said)
    if isinstance(exc, RpaError):
        return str(exc)
    return describe(exc)


def start(
    group: asyncio.TaskGroup, name: str, work: Coroutine[Any, Any, None]
) -> asyncio.Task[None]:
    """`work` as a task of `group`, named (see `named`)."""
    return group.create_task(named(name, work), name=name)
