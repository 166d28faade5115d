"""A CPU stage: the key phrases of a paper's text (kind = "process").

    rpa run ids.txt --stage keyphrases=examples.keyphrases:key_phrases \
        --stage-kind keyphrases=process

The most frequent two-word phrases of the text whose words are not stop words: plain Python,
CPU-bound, so it runs in rpa's processes, never on the event loop.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter

import rpa

STOP = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "for", "from", "has", "have",
        "in", "is", "it", "its", "of", "on", "or", "that", "the", "their", "this", "to", "was",
        "we", "were", "which", "with", "these", "those", "our", "not", "but", "also", "all",
        "been", "into", "than", "then", "such", "may", "more", "one", "two", "using", "used",
        "use", "via", "each", "where", "when", "there",
    }
)  # fmt: skip
WORD = re.compile(r"[a-z][a-z\-]{2,}")


def key_phrases(paper: rpa.Paper, top: int = 10) -> dict[str, object]:
    """The `top` most frequent two-word phrases of the paper's text."""
    words = WORD.findall(paper.text().lower())
    if not words:
        raise rpa.Permanent("no text to find phrases in")
    pairs = Counter(
        f"{a} {b}" for a, b in itertools.pairwise(words) if a not in STOP and b not in STOP
    )
    return {"phrases": [p for p, _ in pairs.most_common(top)], "words": len(words)}
