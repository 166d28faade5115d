"""The `--stage*` options of the commands that run (run, resume, demo): the user's stages
as flags, over the config file's [[stage]] tables and the RPA_STAGE* env vars (read by
rpa.stages.spec), and `--drop-stage`. What they say is laid over the queue's own stages
before the run (rpa.stages.remember, from rpa.run.prepare), where the stages' modules are
imported: a wrong `call` fails before anything runs."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from rpa.cli.output import one_line_errors
from rpa.config import Resolved
from rpa.stages.remember import StageRequest
from rpa.stages.spec import FIELDS, stage_layers

__all__ = ["Stages", "with_stages"]

#: what a command under @with_stages receives as `stages`
Stages = StageRequest

_HELP = {
    "call": "a stage of yours: NAME=module:function (repeatable) [env: RPA_STAGE='a=m:f;b=m:g']",
    "kind": "NAME=async|thread|process [default: async] [env: RPA_STAGE_KIND]",
    "concurrency": "NAME=N: its gate [default: 4] [env: RPA_STAGE_CONCURRENCY]",
    "rate": "NAME=N/period, fleet-wide: 50/1m, 100/s [default: none] [env: RPA_STAGE_RATE]",
    "timeout": "NAME=SECONDS a call may take [default: 120] [env: RPA_STAGE_TIMEOUT]",
    "version": "NAME=V: change it to re-run the stage on every done paper [default: 1] "
    "[env: RPA_STAGE_VERSION]",
    "after": "NAME=OTHER[+OTHER2]: the stages it runs after [default: outcome] "
    "[env: RPA_STAGE_AFTER]",
}


def _param(key: str) -> inspect.Parameter:
    flag = "--stage" if key == "call" else f"--stage-{key}"
    option = typer.Option(flag, help=_HELP[key], rich_help_panel="Your stages")
    return inspect.Parameter(
        f"stage_{key}",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[Optional[list[str]], option],  # noqa: UP045 (typer needs it)
    )


_DROP = inspect.Parameter(
    "drop_stage",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Optional[list[str]],  # noqa: UP045 (typer needs it)
        typer.Option(
            "--drop-stage",
            help="NAME: take a stage out of the queue's stages (its results stay); repeatable",
            rich_help_panel="Your stages",
        ),
    ],
)


def with_stages(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the --stage* options and --drop-stage; it receives `stages`, a
    StageRequest (put it under @with_knobs, which gives it `resolved`)."""
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values()]
    own = [p for p in own if p.name != "stages"]
    params = [*own, *(_param(k) for k in FIELDS), _DROP]

    def wrapper(**kwargs: Any) -> Any:
        flags = {k: kwargs.pop(f"stage_{k}") or [] for k in FIELDS}
        drop = tuple(kwargs.pop("drop_stage") or ())
        resolved: Resolved = kwargs.pop("resolved")  # for its config file
        with one_line_errors():
            given = stage_layers(resolved.config_path, os.environ, flags)
        return fn(resolved=resolved, stages=StageRequest(given, drop), **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper
