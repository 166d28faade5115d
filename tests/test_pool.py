"""The extraction pool with real processes and real PDFs; and extract_pdf on hostile files.

Events are ordered by waiting for a condition with a deadline (`wait_for`), never by sleeping.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from rpa.errors import ConfigError, ExtractTimeout, MemoryCapExceeded, WorkerCrashed
from rpa.extract.fleet import ProcessFleet
from rpa.extract.pdf import _clean, _hyphens, extract_pdf
from rpa.extract.pool import ExtractPool
from rpa.extract.protocol import PDF_MISSING

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "rpa" / "samples").glob("*.pdf"))
LARGEST = max(SAMPLES, key=lambda p: p.stat().st_size)
SMALLEST = min(SAMPLES, key=lambda p: p.stat().st_size)
HOSTILE = sorted((Path(__file__).parent / "data" / "hostile").glob("*.pdf"))
CORPUS_HOSTILE = ROOT.parent / "shared" / "corpus" / "hostile"
KINDS = {"invalid_pdf", "encrypted", "zero_pages", "extract_timeout", "memory_cap"}

# What each bundled hostile file must end as with pypdf (the "specific kind" of the brief).
BUNDLED_EXPECTED = {
    "pdfplumber__empty.pdf": "invalid_pdf",
    "pypdf__r4-owner-password.pdf": "ok",  # opens with the empty user password
    "qpdf__bad-xref.pdf": "invalid_pdf",
    "qpdf__bad11-typeerror.pdf": "invalid_pdf",  # TypeError from pypdf
    "qpdf__bad23-typeerror-extract.pdf": "ok",  # its one page fails: a page error
    "qpdf__bad7-attributeerror.pdf": "invalid_pdf",  # AttributeError from pypdf
    "qpdf__deep-pages.pdf": "invalid_pdf",
    "qpdf__issue-146-no-eof.pdf": "invalid_pdf",
    "qpdf__not-a-pdf.pdf": "invalid_pdf",
    "qpdf__pages-loop.pdf": "invalid_pdf",
    "samplefiles__libreoffice-writer-password.pdf": "encrypted",
}


async def wait_for(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    """Wait until `condition()` holds, polling the loop; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.005)


@pytest.fixture
async def pool() -> AsyncIterator[ExtractPool]:
    async with ExtractPool(2, timeout=30.0) as p:
        yield p


def outcome_of(result: dict[str, object] | BaseException) -> str:
    if isinstance(result, BaseException):
        return getattr(result, "kind", type(result).__name__)
    return "ok" if result["ok"] else str(result["kind"])


# ---------------------------------------------------------------------------- results


async def test_samples_extract_to_text_and_outcome(pool: ExtractPool, tmp_path: Path) -> None:
    texts = [tmp_path / f"{pdf.stem}.txt" for pdf in SAMPLES]
    results = await asyncio.gather(
        *(pool.extract(str(pdf), str(txt)) for pdf, txt in zip(SAMPLES, texts, strict=True))
    )
    for pdf, txt, result in zip(SAMPLES, texts, results, strict=True):
        assert result["ok"] is True, (pdf.name, result)
        pages = result["pages"]
        assert isinstance(pages, int) and pages > 0
        text = txt.read_text(encoding="utf-8")
        assert text.startswith("[PAGE 1]\n") and f"\n[PAGE {pages}]\n" in text
        assert isinstance(result["chars"], int) and result["chars"] > 1000
        outcome = result["outcome"]
        assert isinstance(outcome, dict) and outcome["page_count"] == pages
        assert isinstance(result["warnings"], int)
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.glob(".rpa-*")))
    assert leftovers == []  # no temp file left behind
    stats = pool.statistics()
    assert (stats.workers, stats.alive, stats.busy, stats.started) == (2, 2, 0, 2)


async def test_timeout_kills_only_that_process(pool: ExtractPool, tmp_path: Path) -> None:
    before = pool.pids()
    stuck = pool.extract(str(LARGEST), str(tmp_path / "a.txt"), timeout=0.05)
    other = pool.extract(str(SMALLEST), str(tmp_path / "b.txt"))
    late, fine = await asyncio.gather(stuck, other, return_exceptions=True)
    assert isinstance(late, ExtractTimeout), late
    assert isinstance(fine, dict) and fine["ok"] is True  # the other worker went on
    after = pool.pids()
    assert len(after) == 2 and len(set(before) & set(after)) == 1  # exactly one replaced
    stats = pool.statistics()
    assert (stats.timed_out, stats.replaced, stats.started, stats.alive) == (1, 1, 3, 2)
    assert not (tmp_path / "a.txt").exists()
    again = await pool.extract(str(LARGEST), str(tmp_path / "c.txt"))
    assert again["ok"] is True


async def test_killed_worker_is_reported_and_replaced(tmp_path: Path) -> None:
    async with ExtractPool(1, timeout=30.0) as pool:
        (victim,) = pool.pids()
        task = asyncio.create_task(pool.extract(str(LARGEST), str(tmp_path / "a.txt")))
        await wait_for(lambda: pool.statistics().parsing == 1)  # it has the paper
        os.kill(victim, signal.SIGKILL)  # as the OOM killer (or a segfault) would
        with pytest.raises(WorkerCrashed):
            await task
        stats = pool.statistics()
        assert (stats.crashed, stats.replaced, stats.alive) == (1, 1, 1)
        assert pool.pids() != [victim]
        result = await pool.extract(str(SMALLEST), str(tmp_path / "b.txt"))
        assert result["ok"] is True


async def test_worker_dying_while_idle_is_replaced_before_use(tmp_path: Path) -> None:
    async with ExtractPool(1) as pool:
        (victim,) = pool.pids()
        os.kill(victim, signal.SIGKILL)
        await wait_for(lambda: pool.pids() not in ([], [victim]))
        result = await pool.extract(str(SMALLEST), str(tmp_path / "a.txt"))
        assert result["ok"] is True
        assert pool.statistics().crashed == 0  # no paper was lost to it


def _gone(pid: int, deadline: float = 10.0) -> None:
    """Block (not yielding to the loop) until `pid` is dead: gone, or a zombie."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not die")


async def test_a_death_while_idle_is_not_charged_to_the_next_paper(tmp_path: Path) -> None:
    """The process dies idle and the pool has not noticed yet (its EOF is still unread:
    the loop has not run since) when the next paper is handed to it. That paper is not to
    blame: it goes to the replacement, and no crash is counted (with --poison-after 2, two
    such deaths quarantined an innocent paper)."""
    async with ExtractPool(1) as pool:
        (victim,) = pool.pids()
        os.kill(victim, signal.SIGKILL)
        _gone(victim)  # dead, and the loop has not run: the pool cannot know yet
        result = await pool.extract(str(SMALLEST), str(tmp_path / "a.txt"))
        assert result["ok"] is True
        stats = pool.statistics()
        assert (stats.crashed, stats.replaced) == (0, 1)
        assert pool.pids() != [victim]


async def test_the_fleet_keeps_its_count_and_leaves_no_process_behind() -> None:
    """rpa.extract.fleet on its own: a retired process is replaced and its replacement joins
    the idle; one started on the side (a run alone) is stopped; `close` reaps every one."""
    fleet = ProcessFleet(2, nice=0, max_mb=None)
    await fleet.open()
    try:
        first = await fleet.take()
        await fleet.retire(first)  # the task that has started its replacement
        assert (fleet.started, fleet.replaced, len(fleet.usable())) == (3, 1, 2)
        pids = {w.pid for w in fleet.usable()}
        assert first.pid not in pids
        taken = [await fleet.take(), await fleet.take()]  # the other one and the replacement
        assert {w.pid for w in taken} == pids
        for worker in taken:
            fleet.give_back(worker)
        side = await fleet.start_worker()
        await fleet.stop_one(side)
        assert side not in fleet.workers
    finally:
        await fleet.close()
    assert fleet.workers == []
    for pid in (first.pid, side.pid, *pids):
        _gone(pid)


async def test_cancelled_caller_leaves_no_busy_process(tmp_path: Path) -> None:
    async with ExtractPool(1) as pool:
        (first,) = pool.pids()
        task = asyncio.create_task(pool.extract(str(LARGEST), str(tmp_path / "a.txt")))
        await wait_for(lambda: pool.statistics().busy == 1)
        task.cancel()  # Ctrl-C reaching a caller mid-parse
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: pool.pids() not in ([], [first]))
        result = await pool.extract(str(SMALLEST), str(tmp_path / "b.txt"))
        assert result["ok"] is True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_children_are_niced_capped_and_the_oom_killers_first_choice(
    tmp_path: Path,
) -> None:
    async with ExtractPool(1, max_mb=512, nice=7) as pool:
        await pool.extract(str(SMALLEST), str(tmp_path / "a.txt"))  # set up by now
        (pid,) = pool.pids()
        cap, nice = await asyncio.to_thread(address_cap_and_nice, pid)
        assert cap == 512 * 1024 * 1024
        assert nice == min(19, os.nice(0) + 7)
        adj = await asyncio.to_thread(Path(f"/proc/{pid}/oom_score_adj").read_text)
        assert int(adj) == 1000  # the kernel kills an extraction process before rpa
        own = await asyncio.to_thread(Path("/proc/self/oom_score_adj").read_text)
        assert int(own) < 1000  # and rpa's own score is left as it was


def address_cap_and_nice(pid: int) -> tuple[int, int]:
    limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(ln for ln in limits.splitlines() if ln.startswith("Max address space"))
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(line.split()[3]), int(stat[16])


def write_bomb(path: Path, megabytes: int) -> None:
    """A one-page PDF whose content stream inflates from ~70 KB to `megabytes` MiB."""
    body = b"BT /F1 12 Tf (" + b"A" * (megabytes << 20) + b") Tj ET\n"
    content = zlib.compress(body, 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content)
        + content
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))


async def test_memory_cap_is_reported_and_process_recycled(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.pdf"
    write_bomb(bomb, 70)  # under pypdf's own 75 MB inflate limit, over our cap
    async with ExtractPool(1, max_mb=150) as pool:
        (first,) = pool.pids()
        with pytest.raises(MemoryCapExceeded):
            await pool.extract(str(bomb), str(tmp_path / "bomb.txt"))
        assert pool.pids() != [first] and pool.statistics().replaced == 1
        result = await pool.extract(str(SMALLEST), str(tmp_path / "a.txt"))
        assert result["ok"] is True


# ---------------------------------------------------------------------------- hostile


async def run_table(
    pool: ExtractPool, files: list[Path], tmp_path: Path
) -> tuple[list[str], list[str]]:
    """Extract every file at once; their outcomes, and a printable table for the lead."""

    slots = asyncio.Semaphore(pool.statistics().workers)  # so `secs` is not queueing time

    async def one(pdf: Path) -> tuple[str, float, str]:
        async with slots:
            t0 = time.perf_counter()
            try:
                result: dict[str, object] | BaseException = await pool.extract(
                    str(pdf), str(tmp_path / f"{pdf.stem}.txt")
                )
            except (ExtractTimeout, WorkerCrashed, MemoryCapExceeded) as exc:
                result = exc
            took = time.perf_counter() - t0
        detail = ""
        if isinstance(result, dict):
            errors = result.get("page_errors")
            detail = str(result.get("message", ""))
            if isinstance(errors, list) and errors:
                detail = f"{len(errors)} page error(s): {errors[0]}"
        return outcome_of(result), took, detail[:70]

    rows = await asyncio.gather(*(one(pdf) for pdf in files))
    table = [f"{'file':48} {'outcome':12} {'secs':>6}  detail"]
    table += [f"{f.name:48} {o:12} {t:6.2f}  {d}" for f, (o, t, d) in zip(files, rows, strict=True)]
    return [o for o, _, _ in rows], table


async def test_bundled_hostile_files_end_in_a_specific_kind(
    pool: ExtractPool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes, table = await run_table(pool, HOSTILE, tmp_path)
    with capsys.disabled():
        print("\nbundled hostile PDFs (pypdf, 2 processes):\n" + "\n".join(table))
    assert {f.name: o for f, o in zip(HOSTILE, outcomes, strict=True)} == BUNDLED_EXPECTED
    assert pool.statistics().crashed == 0


@pytest.mark.corpus
async def test_corpus_hostile_files_end_in_ok_or_a_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not CORPUS_HOSTILE.is_dir():
        pytest.skip("../shared/corpus is not here")
    files = sorted(CORPUS_HOSTILE.glob("*.pdf"))
    async with ExtractPool(2, timeout=20.0) as pool:
        outcomes, table = await run_table(pool, files, tmp_path)
        with capsys.disabled():
            print("\ncorpus hostile PDFs (pypdf, 2 processes, 20 s timeout):\n" + "\n".join(table))
        assert set(outcomes) <= KINDS | {"ok"}
        assert pool.statistics().alive == 2


# ---------------------------------------------------------------------------- extract_pdf


def test_zero_page_pdf_is_its_own_kind(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pdf"
    with empty.open("wb") as out:
        PdfWriter().write(out)
    result = extract_pdf(str(empty), str(tmp_path / "empty.txt"))
    assert result == {"ok": False, "kind": "zero_pages", "message": "the PDF has no pages"}


def test_page_errors_and_warnings_are_data_not_exceptions(tmp_path: Path) -> None:
    # pytest runs with filterwarnings=error: a warning leaking out of pypdf would raise here.
    bad_page = next(p for p in HOSTILE if p.name == "qpdf__bad23-typeerror-extract.pdf")
    result = extract_pdf(str(bad_page), str(tmp_path / "a.txt"))
    assert result["ok"] is True
    assert result["page_errors"] == [
        "p1: TypeError: '>=' not supported between instances of 'TextStringObject' and 'int'"
    ]
    noisy = next(p for p in SAMPLES if "revtex" in p.name)  # fonts pypdf warns about
    result = extract_pdf(str(noisy), str(tmp_path / "b.txt"))
    assert isinstance(result["warnings"], int) and result["warnings"] > 0


def test_unreadable_path_and_unknown_extractor(tmp_path: Path) -> None:
    missing = extract_pdf(str(tmp_path / "nope.pdf"), str(tmp_path / "a.txt"))
    assert missing["ok"] is False and missing["kind"] == PDF_MISSING  # fetched again
    unknown = extract_pdf(str(SMALLEST), str(tmp_path / "a.txt"), extractor="tesseract")
    assert unknown["ok"] is False and unknown["kind"] == "config"
    with pytest.raises(ConfigError):
        ExtractPool(1, extractor="tesseract")


def test_pdfium_extractor_gives_the_same_shape(tmp_path: Path) -> None:
    pytest.importorskip("pypdfium2")
    result = extract_pdf(str(SMALLEST), str(tmp_path / "a.txt"), extractor="pdfium")
    assert result["ok"] is True and set(result) == {
        "ok",
        "pages",
        "chars",
        "page_errors",
        "outcome",
        "warnings",
    }
    assert (tmp_path / "a.txt").read_text(encoding="utf-8").startswith("[PAGE 1]\n")
    # PDFium marks each line-end hyphenation it joined with U+FFFE; the text keeps the word
    sample = next(p for p in SAMPLES if "s2orc-n18-3011" in p.name)
    extract_pdf(str(sample), str(tmp_path / "c.txt"), extractor="pdfium")
    text = (tmp_path / "c.txt").read_text(encoding="utf-8")
    assert "\ufffe" not in text
    assert not [c for c in text if c < " " and c not in "\t\n"]  # see test_text_is_clean
    assert len(text) > 20_000
    locked = next(p for p in HOSTILE if "libreoffice-writer-password" in p.name)
    assert extract_pdf(str(locked), str(tmp_path / "b.txt"), "pdfium")["kind"] == "encrypted"


def _controls(text: str) -> list[str]:
    return [c for c in text if (c < " " and c not in "\t\n") or "\x7f" <= c < "\xa0"]


def test_text_is_clean_of_control_characters(tmp_path: Path) -> None:
    # pypdf gives control characters for glyphs without a Unicode mapping (this sample's math)
    sample = next(p for p in SAMPLES if "s2orc-n18-3011" in p.name)
    raw = "".join(page.extract_text() or "" for page in PdfReader(sample).pages)
    assert len(_controls(raw)) > 10
    assert extract_pdf(str(sample), str(tmp_path / "a.txt"))["ok"] is True
    text = (tmp_path / "a.txt").read_text(encoding="utf-8")
    assert _controls(text) == [] and "\ufffd" in text  # each one marked, none kept
    assert _clean("a\x1b[31mb\x00\r\nc\x85\td\ud800") == "a\ufffd[31mb\ufffd\n\nc\ufffd\td?"


def test_pdfium_hyphen_marks_join_words_or_keep_real_hyphens() -> None:
    # PDFium's U+FFFE stands where it removed "-\n"; only the text around it says which kind
    text = "per\ufffesonalized Self\ufffeBLEU S2ORC\ufffeSciBERT 2\ufffe3 na\ufffeïve"
    assert _hyphens(text) == "personalized Self-BLEU S2ORC-SciBERT 2-3 naïve"
    assert _hyphens("no marks") == "no marks"


# ---------------------------------------------------------------------------- thread mode


async def test_thread_mode_extracts_and_times_out(tmp_path: Path) -> None:
    async with ExtractPool(2, mode="thread", timeout=30.0) as pool:
        result = await pool.extract(str(SMALLEST), str(tmp_path / "a.txt"))
        assert result["ok"] is True and pool.pids() == []
        with pytest.raises(ExtractTimeout):
            await pool.extract(str(LARGEST), str(tmp_path / "b.txt"), timeout=0.01)
        assert pool.statistics().timed_out == 1
        # The thread cannot be stopped: it runs on and frees its slot when done.
        await wait_for(lambda: pool.statistics().busy == 0, deadline=30.0)


# ---------------------------------------------------------------------------- the loop


async def test_loop_stays_responsive_while_two_processes_extract(
    pool: ExtractPool, tmp_path: Path
) -> None:
    # A correctness check, not a benchmark: any blocking call on the loop thread (a join,
    # a blocking read, PDF work) would show up as a lag of the order of a parse (~1 s).
    lags: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - t0 - 0.01)

    prober = asyncio.create_task(probe())
    try:
        work = [*SAMPLES, *SAMPLES[:2]]
        results = await asyncio.gather(
            *(pool.extract(str(p), str(tmp_path / f"{i}.txt")) for i, p in enumerate(work))
        )
        # and a kill + replacement on the way, which must not block either
        with pytest.raises(ExtractTimeout):
            await pool.extract(str(LARGEST), str(tmp_path / "t.txt"), timeout=0.05)
    finally:
        done.set()
        await prober
    assert all(r["ok"] for r in results)
    assert len(lags) > 50
    # A correctness check, not a benchmark: one parse of the largest sample on the loop would
    # stall it for over a second; 0.5 s leaves room for a machine busy with other programs
    # (seen here: 115 and 201 ms while a benchmark ran at higher priority).
    assert max(lags) < 0.5, f"max loop lag {max(lags) * 1000:.0f} ms"


async def test_a_process_that_has_grown_is_recycled_and_the_next_paper_succeeds(
    tmp_path: Path,
) -> None:
    """Celery's max-memory-per-child: a process over recycle_mb after a paper is replaced
    before it takes the next (1 MiB: every process is over it)."""
    async with ExtractPool(1, recycle_mb=1) as pool:
        (first,) = pool.pids()
        a = await pool.extract(str(SMALLEST), str(tmp_path / "a.txt"))
        await wait_for(lambda: pool.pids() not in ([], [first]))
        b = await pool.extract(str(SMALLEST), str(tmp_path / "b.txt"))
        assert a["ok"] is True and b["ok"] is True and "rss_mb" not in a
        stats = pool.statistics()
        assert (stats.recycled, stats.crashed) == (2, 0)
    async with ExtractPool(1, recycle_mb=4096) as pool:  # a sane limit: kept
        (only,) = pool.pids()
        await pool.extract(str(SMALLEST), str(tmp_path / "c.txt"))
        assert pool.pids() == [only] and pool.statistics().recycled == 0


async def test_a_process_shed_for_memory_fails_its_paper_as_memory_pressure(
    tmp_path: Path,
) -> None:
    from rpa.errors import MemoryPressure

    async with ExtractPool(1) as pool:
        (victim,) = pool.pids()
        assert not pool.shed(victim)  # idle: nothing to shed
        task = asyncio.create_task(pool.extract(str(LARGEST), str(tmp_path / "a.txt")))
        await wait_for(lambda: pool.statistics().parsing == 1)
        assert pool.shed(victim)
        with pytest.raises(MemoryPressure, match="killed for memory"):
            await task
        assert pool.statistics().crashed == 0  # not a crash: no poison count
        again = await pool.extract(str(SMALLEST), str(tmp_path / "b.txt"))
        assert again["ok"] is True
