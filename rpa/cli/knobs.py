"""The knob options, generated from `Settings`: a new knob is a flag, an env var and a config
key at once.

`with_knobs()` gives a command every knob (or the ones named) and `--config`; the command then
receives `resolved` (the settings after defaults < config file < env < flags, resolved by
`rpa.config.load_settings`, and where each came from) instead of those options.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rpa.cli.output import choice_enum, one_line_errors
from rpa.config import ENV_PREFIX, knob_choices, knob_fields, load_settings

__all__ = ["CONFIG_PARAM", "with_knobs"]


def _knob_parameters(
    names: set[str] | None = None, shown: dict[str, str] | None = None
) -> list[inspect.Parameter]:
    """One keyword parameter per knob (all, or `names`), each a Typer option with its env
    var, its fixed values if it has some, and its default in the help (or what `shown` says
    the command uses instead); the value is None unless given."""
    params = []
    for f in knob_fields():
        if names is not None and f.name not in names:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).split("[")[0]
        typ: Any = {"int": int, "float": float, "Path": Path, "bool": bool}.get(kind, str)
        decls = [f"{flag}/--no-{flag[2:]}"] if typ is bool else [flag]
        default = f.default if not isinstance(f.default, str) or f.default else "''"
        default = (shown or {}).get(f.name, default)
        choices = knob_choices(f)
        option = typer.Option(
            *decls,
            help=f"{f.metadata['help']} [default: {default}]",
            envvar=f"{ENV_PREFIX}{f.name.upper()}",
            show_envvar=True,
            show_default=False,
            rich_help_panel="Knobs",
        )
        if choices:  # Typer lists an Enum's values in --help and refuses others (exit 2)
            typ = choice_enum(f.name, choices)
        params.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Optional[typ], option],  # noqa: UP045 (typer needs it)
            )
        )
    return params


CONFIG_PARAM = inspect.Parameter(
    "config",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--config",
            envvar="RPA_CONFIG",
            show_envvar=True,
            help="config TOML [default: ./rpa.toml if present]",
        ),
    ],
)


def with_knobs(
    names: set[str] | None = None, *, shown: dict[str, str] | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the knob options (all, or `names`) and `--config`; the function receives
    `resolved` (the settings and where each came from) instead of them. `shown`: the default
    to show of a knob whose Settings default the command does not use (the demo's database,
    a resume's queue settings)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = list(inspect.signature(fn, eval_str=True).parameters.values())
        own = [p for p in own if p.name != "resolved"]
        knobs = _knob_parameters(names, shown)
        knob_names = {p.name for p in knobs}

        def wrapper(**kwargs: Any) -> Any:
            ctx: typer.Context = kwargs.pop("ctx")
            flags = {}
            for name in knob_names:
                value = kwargs.pop(name)
                # Only what was typed counts as a flag; env and defaults are load_settings' job.
                # (Typer vendors click: compare the enum by name, not identity.)
                source = ctx.get_parameter_source(name)
                if source is not None and source.name == "COMMANDLINE":
                    flags[name] = value.value if isinstance(value, enum.Enum) else value
            config = kwargs.pop("config")
            with one_line_errors():
                resolved = load_settings(config_path=config, flags=flags)
                return fn(resolved=resolved, **kwargs)

        ctx_param = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        params = [ctx_param, *own, CONFIG_PARAM, *knobs]
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        return wrapper

    return decorate
