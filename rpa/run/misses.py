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

The same holds for a source that answers each of those papers with something that is not a
PDF (`not_pdf`: an HTML page, a login wall, a captcha, a static site's fallback page): an
adversary's trial burnt a list so. The first N misses may mix the two.

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
        self._missed: dict[str, str] = {}  # job id -> its kind
        self._served = False
        self._last = ""

    def served(self) -> None:
        """A PDF came from the source: its 404s are the papers' own."""
        self._served = True

    def missed(self, job_id: str, exc: errors.JobError) -> None:
        """A paper's failure (charged as any): raise SourceMissesAll when it is the limit's
        'not found' or 'not a PDF' with none served."""
        misses = (errors.NotFound, errors.NotPdf)
        if self._served or not self.limit or not isinstance(exc, misses):
            return
        self._missed[job_id] = exc.kind
        self._last = exc.message
        if len(self._missed) >= self.limit:
            kinds = sorted(set(self._missed.values()))
            retry = command_hint(f"retry --db {self.db}" + "".join(f" --kind {k}" for k in kinds))
            found = "found none of" if kinds == ["not_found"] else "served no PDF for any of"
            raise errors.SourceMissesAll(
                f"the PDF source {found} the first {len(self._missed)} papers asked of it (the "
                f"last: {self._last}): is {self.source} right? They are failed "
                f"{' or '.join(f'`{k}`' for k in kinds)}; once it is right, `{retry}` puts them "
                "back (--first-misses 0 goes on when these papers are simply not there)"
            )
