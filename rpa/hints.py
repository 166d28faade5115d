"""What to type next, as the user can type it from where they stand.

A hint such as `rpa status --db rpa.db` only helps when `rpa` is the command the user has.
Launched through `./run.sh`, it is not on the PATH: run.sh says how it was called in
`RPA_LAUNCHER` (not a knob: `rpa.config.NOT_KNOBS`), and the hints name it instead
(`./run.sh status --db rpa.db`). Launched as `.venv/bin/rpa` while no `rpa` on the PATH is that
same program, the hints name that path.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

__all__ = ["LAUNCHER_ENV", "command_hint", "launcher"]

#: how the user launched rpa, when it is not `rpa` on the PATH (run.sh sets it)
LAUNCHER_ENV = "RPA_LAUNCHER"


def launcher() -> str:
    """The command that starts rpa from the user's working directory."""
    given = os.environ.get(LAUNCHER_ENV, "").strip()
    if given:
        return given if os.sep in given else f".{os.sep}{given}"
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "rpa" and os.sep in argv0:
        on_path = shutil.which("rpa")
        same = on_path is not None and os.path.realpath(on_path) == os.path.realpath(argv0)
        if not same:
            return argv0
    return "rpa"


def command_hint(args: str) -> str:
    """`rpa ARGS` as the user can type it: `command_hint("status --db q.db")`."""
    return f"{shlex.quote(launcher())} {args}"
