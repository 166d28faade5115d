"""What a failure that escaped the work on one paper means: the JobError that explains it.

`classify` turns whatever escapes the work on one paper (an OSError, a driver's error, a bug)
into one of rpa.errors' JobErrors, so that paper's attempt ends explained and the failure
policy (rpa.run.policy) can decide what it means.
"""

from __future__ import annotations

import errno
import os

from rpa.errors import (
    ConditionError,
    DatabaseError,
    DiskFull,
    InternalError,
    JobError,
    OutUnwritable,
    QueueUnavailable,
    TransientIo,
    WriteError,
)

__all__ = ["classify"]

_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
#: the folder cannot be written now, whatever the paper (a read-only mount, permissions)
_NOT_NOW = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
#: this paper's path cannot be written (a folder in its place, a name too long)
_CANNOT_WRITE = frozenset({errno.EISDIR, errno.ENOTDIR, errno.ENAMETOOLONG, errno.EEXIST})


def classify(exc: BaseException, doing: str = "", *, reading: bool = False) -> JobError:
    """The JobError that explains `exc`, raised while `doing` something for one paper.

    A JobError is itself. Writing: no space left, anywhere: DiskFull; a folder that cannot be
    written now (read-only, permissions): OutUnwritable (both conditions of the run, not the
    paper's; `folder` names it when the OSError names a file); a path of the paper's that
    cannot be (a folder in its place): WriteError (permanent). Any other OSError, and any
    OSError while `reading` (a source's file): TransientIo. The queue database unavailable
    (rpa.errors.DatabaseError, a driver's operational error): QueueUnavailable, which the
    failure policy gives back uncounted. Anything else, a database refusing the change (a
    constraint) included, is InternalError (permanent), with its type and message.
    """
    if isinstance(exc, JobError):
        return exc
    where = f" while {doing}" if doing else ""
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, OSError) and reading:
        return TransientIo(f"{described}{where}")
    if isinstance(exc, OSError):
        condition: ConditionError | None = None
        if exc.errno in _NO_SPACE:
            condition = DiskFull(f"no space left{where}: {described}")
        elif exc.errno in _NOT_NOW:
            condition = OutUnwritable(f"cannot write{where}: {described}")
        if condition is not None:
            if isinstance(exc.filename, str):
                condition.folder = os.path.dirname(exc.filename)
            return condition
        if exc.errno in _CANNOT_WRITE:
            return WriteError(f"cannot write{where}: {described}")
        return TransientIo(f"{described}{where}")
    if isinstance(exc, DatabaseError) or _is_database_error(exc):
        return QueueUnavailable(f"{described}{where}")
    return InternalError(f"{described}{where}")


def _is_database_error(exc: BaseException) -> bool:
    # Both drivers follow PEP 249 (no import needed to tell their classes apart): the
    # errors they raise for a busy or lost database are OperationalError or InterfaceError
    # (an IntegrityError, a constraint or a trigger refusing the change, is not transient).
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError")
        and cls.__module__.split(".")[0] in ("sqlite3", "psycopg")
        for cls in type(exc).__mro__
    )
