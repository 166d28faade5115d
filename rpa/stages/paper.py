"""`rpa.Paper`: what rpa gives a user stage about one done paper.

Plain, picklable data (a process stage receives it in another process): the paper's ID, the
paths of its PDF, text and outcome record, the record itself (arXiv's metadata included) and
the results of the stages that ran before this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Paper"]


@dataclass(frozen=True, slots=True)
class Paper:
    """One done paper, as a stage sees it."""

    #: the queue's key: "2301.00001v2", "hep-th/9901001v1", "ext:name"
    id: str
    pdf_path: Path | None
    text_path: Path | None
    outcome_path: Path | None
    #: the key-outcome record (title, abstract, headings, metadata, ...) as rpa wrote it
    record: dict[str, Any] = field(default_factory=dict)
    #: the results of the user stages already done for this paper, by stage name
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def title(self) -> str | None:
        return self.record.get("title")

    @property
    def abstract(self) -> str | None:
        return self.record.get("abstract")

    def text(self) -> str:
        """The extracted text. Blocking file I/O: call it from a thread or process stage, or
        through `await asyncio.to_thread(paper.text)` in an async one."""
        if self.text_path is None:
            return ""
        return self.text_path.read_text(encoding="utf-8", errors="replace")
