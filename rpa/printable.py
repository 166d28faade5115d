"""Text from outside made safe to show: the one helper every string rpa did not write passes
through before it reaches a terminal or a log.

A server's reason phrase or Content-Type, a PDF's title, a tar member's name can carry control
characters: `ESC ] 0 ; ... BEL` retitles a terminal, `ESC [ 2 J` clears it, `ESC [ 31 m`
recolours it. Every C0 and C1 control character but the newline and the tab becomes U+FFFD (as
in the text files rpa writes), so the text is shown as text.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character but newline and tab replaced by U+FFFD."""
    return _CONTROL.sub("\ufffd", text)
