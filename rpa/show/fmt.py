"""Formatting shared by every view: durations, times, and pre-formatted styled lines.

Everything rpa draws is built as `Lines`: plain, pre-formatted runs of text, at most `WIDTH`
(80) columns wide by construction, so the live table, the summary and `rpa status` read the same
on an 80-column terminal, in a log file, or in a pipe. Laying the live table out with Rich
`Table`s cost ~17 ms a frame (held GIL, loop lag); as lines it costs well under a millisecond.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterable, Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style

from rpa.metrics import WindowStats
from rpa.printable import printable
from rpa.units import gib

__all__ = [
    "WIDTH", "Cell", "Line", "Lines", "block", "clip", "dur", "figure", "gib", "ms", "q", "when",
    "wrap",
]  # fmt: skip

#: every line rpa draws fits in this many columns
WIDTH = 80

_STYLES = {
    "": Style(),
    "bold": Style(bold=True),
    "head": Style(bold=True, dim=True),
    "title": Style(bold=True, color="cyan"),
    "red": Style(color="red"),
    "green": Style(color="green"),
    "yellow": Style(color="yellow"),
}

Run = tuple[str, str]  # (text, style name)
Line = list[Run]
Cell = str | Run  # a table cell: text, or (text, style name)


class Lines:
    """Pre-formatted styled lines: a renderable that costs only the copy of its segments.
    Lines wider than the console are cropped by Rich, never wrapped."""

    def __init__(self, lines: Sequence[Sequence[Run]]) -> None:
        self.lines = lines

    @property
    def plain(self) -> str:
        return printable("\n".join("".join(text for text, _ in line) for line in self.lines))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for line in self.lines:
            for text, style in line:
                # what came from outside (a reason phrase, a title) is shown, never obeyed
                yield Segment(printable(text), _STYLES[style])
            yield newline

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        width = max((sum(len(t) for t, _ in line) for line in self.lines), default=0)
        return Measurement(width, width)


def ms(seconds: float | None) -> str:
    """A duration for a table cell: '12.3 ms', '1.41 s'; '—' for no data."""
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def figure(value: float, spec: str, sampled: bool) -> str:
    """A measured figure as `spec` formats it ('.1f'); '—' while it has no sample yet (a rate
    before its first paper is not a measured 0)."""
    return format(value, spec) if sampled else "—"


def q(stats: WindowStats, name: str) -> str:
    """One figure of a WindowStats ('p50', 'p95', 'p99', 'max'), '—' when it has no data."""
    return ms(getattr(stats, name)) if stats.count else "—"


def dur(seconds: float | None) -> str:
    """An elapsed time or ETA, compact and whole: '0m07s', '3h04m', '2d03h'; '—' unknown."""
    if seconds is None:
        return "—"
    seconds = max(0, round(seconds))  # 11.96 s is 0m12s, as the "12.0 s" beside it
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    if days:
        return f"{days}d{h:02d}h"
    if h:
        return f"{h}h{m:02d}m"
    return f"{m}m{s:02d}s"


def when(ts: float | None) -> str:
    """A wall-clock time: 'HH:MM:SS' today, else 'MM-DD HH:MM'; '—' for none."""
    if not ts:
        return "—"
    moment = dt.datetime.fromtimestamp(ts)
    if moment.date() == dt.date.today():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M")


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` columns with '…' when longer."""
    text = " ".join(str(text).splitlines()).replace("\t", " ")
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def wrap(text: str, style: str = "", *, width: int = WIDTH, indent: str = "") -> list[Line]:
    """`text` as lines of at most `width` columns, none of it cut (continuation lines get
    `indent` more)."""
    lines = textwrap.wrap(
        " ".join(str(text).splitlines()), width, subsequent_indent=indent, break_long_words=True
    )
    return [[(line, style)] for line in lines or [""]]


def block(
    title: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    labels: bool = True,
    label_width: int = 22,
) -> list[Line]:
    """A titled table as lines: numbers right-aligned, the first column left-aligned (and cut
    to `label_width`) when it holds row labels."""
    cells = [[(c, "") if isinstance(c, str) else c for c in row] for row in rows]
    if labels:
        cells = [[(clip(row[0][0], label_width), row[0][1]), *row[1:]] for row in cells]
    widths = [len(h) for h in header]
    for row in cells:
        for i, (text, _) in enumerate(row):
            widths[i] = max(widths[i], len(text))

    def fit(i: int, text: str) -> str:
        return text.ljust(widths[i]) if i == 0 and labels else text.rjust(widths[i])

    out: list[Line] = [[(title, "title")]]
    out.append([("  " + "  ".join(fit(i, h) for i, h in enumerate(header)), "head")])
    for row in cells:
        line: Line = [("  ", "")]
        for i, (text, style) in enumerate(row):
            line.append((("  " if i else "") + fit(i, text), style))
        out.append(line)
    return out
