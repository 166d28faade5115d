"""The PDF work: from a stored PDF to its text, its key outcomes and its record.

    pool.py       ExtractPool: N extraction processes driven by the event loop (the parent's
                  side: dispatch, timeouts, statistics, the memory governor's hooks)
    fleet.py      the pool's processes: N kept alive, started, replaced, stopped
    process.py    the parent's handle on one process (start, read its pipe, kill, reap)
    worker.py     the child: its start-up (nice, memory cap, exit with the parent) and loop
    protocol.py   the messages on the pipes between them
    solo.py       the pool's shared/exclusive gate: a paper run alone, the others held back
    threads.py    the thread mode (--extract-pool=thread)
    pdf.py        extract_pdf: one PDF's text (pypdf or pdfium), written with [PAGE n] markers,
                  and its analysis; runs in a worker, never raises
    outcome/      the key-outcome analysis of the text (title, authors, abstract, headings...)
    record.py     the key-outcome record: its schema, how it is built, how it is written

This package itself exports only EXTRACTORS, so that the main process can check an extractor's
name without importing pypdf (only the extraction processes need it): import the modules above
for the rest.
"""

__all__ = ["EXTRACTORS"]

#: the extractors `rpa.extract.pdf.extract_pdf` knows
EXTRACTORS = ("pypdf", "pdfium")
