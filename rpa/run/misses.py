"""A PDF source that finds none of the papers asked of it: a wrong --pdf-url, likelier than
that many missing papers.

A 404 is a paper's own failure: arXiv has no such paper, the mirror lacks it. But when the
first --first-misses papers a run asks of its source are all 'not found' and not one PDF has
come, the likelier cause is the run's: a --pdf-url with a wrong path (`/pdfs/` for `/pdf/`),
the wrong folder or tar, IDs of another archive. Going on would fail a whole queue in minutes
(a newcomer's trial failed 196,912 papers so). So the run stops there, `interrupted`, saying
what it asked and where (`SourceMissesAll`); those papers are failed `not_found` like any
other (`rpa retry --kind not_found` puts them back once the source is right). Once one PDF
came, 404s are only counted as failures. `--first-misses 0` turns this off.

(Giving those papers back uncounted instead was tried and left: a paper given back is claimed
again at once, the queue being FIFO, or, held back for a while, comes due again before a
slow, polite source has been asked for the others: either way a lone missing paper loops or
waits, and the count is of retries, not of papers.)
"""

from __future__ import annotations

from rpa import errors
from rpa.config import Settings
from rpa.hints import command_hint
from rpa.queue import redact

__all__ = ["FirstMisses"]


class FirstMisses:
    """The run's 'not found' papers while its PDF source has served none."""

    def __init__(self, settings: Settings) -> None:
        self.limit = settings.first_misses
        self.source = (
            f"--pdf-tar {settings.pdf_tar}" if settings.pdf_tar else f"--pdf-url {settings.pdf_url}"
        )
        self.db = redact(settings.db)
        self._missed: set[str] = set()
        self._served = False
        self._last = ""

    def served(self) -> None:
        """A PDF came from the source: its 404s are the papers' own."""
        self._served = True

    def missed(self, job_id: str, exc: errors.JobError) -> None:
        """A paper's failure (charged as any): raise SourceMissesAll when it is the limit's
        'not found' with none served."""
        if self._served or not self.limit or not isinstance(exc, errors.NotFound):
            return
        self._missed.add(job_id)
        self._last = exc.message
        if len(self._missed) >= self.limit:
            retry = command_hint(f"retry --db {self.db} --kind not_found")
            raise errors.SourceMissesAll(
                f"the PDF source found none of the first {len(self._missed)} papers asked of "
                f"it (the last: {self._last}): is {self.source} right? They are failed "
                f"`not_found`; once it is right, `{retry}` puts them back (--first-misses 0 "
                "goes on when these papers are simply not there)"
            )
