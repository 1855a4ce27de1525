"""Parts: line-aligned byte ranges transformed in worker processes, kept in order."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice, pairwise
from typing import TYPE_CHECKING, Any

from adapters.exports.dlp.blocks import MAX_LINE_BYTES, blocks
from adapters.exports.dlp.csv_engine import CsvEngine
from adapters.exports.dlp.errors import (
    DlpError,
    ResidualPiiError,
    SourceFormatError,
    UnclassifiedColumnError,
)
from adapters.exports.dlp.jsonl_engine import JsonlEngine
from adapters.exports.dlp.masks import bump

if TYPE_CHECKING:
    import io
    from collections.abc import Callable
    from concurrent.futures import Future

PART_BYTES = 8 * 1024 * 1024  # parallel work unit: balances cores, bounds memory
MIN_PARALLEL_BYTES = 4 * 1024 * 1024  # below this, process start-up costs more


@dataclass(frozen=True)
class Job:
    """Everything a process needs to transform one byte range (picklable)."""

    source: str
    start: int
    end: int
    fmt: str
    header: list[str] | None
    delimiter: str
    lineterminator: str
    columns: dict[str, str]
    preset: str
    key: bytes
    context: str


@dataclass
class _PartResult:
    lines: int = 0
    rows: int = 0
    data: bytes = b""
    residual: int = 0
    counts: dict[str, dict[str, int]] | None = None
    error: DlpError | None = None
    fallback: bool = False


def engine_for(job: Job) -> CsvEngine | JsonlEngine:
    """A fresh engine for the job's format and settings."""
    if job.fmt == "csv":
        assert job.header is not None
        return CsvEngine(
            job.header,
            delimiter=job.delimiter,
            lineterminator=job.lineterminator,
            columns=job.columns,
            preset=job.preset,
            key=job.key,
            context=job.context,
        )
    return JsonlEngine(
        columns=job.columns, preset=job.preset, key=job.key, context=job.context
    )


def _run_part(job: Job) -> _PartResult:
    """Transform one range (in a worker process); the output travels back in memory.

    Parts are small (PART_BYTES) and few are in flight, so this stays bounded,
    and it spares writing, re-reading and deleting a part file per range. Row
    numbers in errors are local to the range; the parent shifts them.
    """
    engine = engine_for(job)
    result = _PartResult()
    chunks: list[bytes] = []
    with open(job.source, "rb") as src:  # noqa: PTH123
        try:
            for _, raw, newlines in blocks(src, job.start, job.end):
                first = result.lines + 1
                if isinstance(engine, CsvEngine):
                    parsed = engine.parse_block(raw, first)
                    if parsed is None:
                        result.fallback = True
                        return result
                    text = engine.transform_block(parsed, first)
                else:
                    text = engine.transform_block(raw, first)
                result.lines += newlines
                chunks.append(text.encode())
        except DlpError as error:
            result.error = error
            return result
    result.data = b"".join(chunks)
    result.rows = engine.rows
    result.residual = engine.residual
    result.counts = engine.counts
    return result


def _shifted(error: DlpError, lines_before: int) -> DlpError:
    """``error`` with row numbers local to a range made global."""
    if isinstance(error, SourceFormatError):
        row = error.row + lines_before
        return SourceFormatError(row, error.problem)
    if isinstance(error, ResidualPiiError):
        return ResidualPiiError([(r + lines_before, c, k) for r, c, k in error.hits])
    if isinstance(error, UnclassifiedColumnError) and error.row is not None:
        return UnclassifiedColumnError(error.columns, error.row + lines_before)
    return error


def replace_job(job: Job, **changes: Any) -> Job:
    """``job`` with some fields changed."""
    fields = dict(job.__dict__)
    fields.update(changes)
    return Job(**fields)


class Sink:
    """The output file: hashes and counts what is written."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.f.write(data)
        self.size += len(data)


def _boundaries(source: str, start: int, end: int, parts: int) -> list[int] | None:
    """``parts`` + 1 offsets in ``[start, end]``, each just after a newline.

    None if a line is too long to find its end (one process reports it).
    """
    cuts = [start]
    with open(source, "rb") as f:  # noqa: PTH123
        for k in range(1, parts):
            f.seek(max(start + (end - start) * k // parts - 1, cuts[-1]))
            line = f.readline(MAX_LINE_BYTES)
            if line and not line.endswith(b"\n") and f.tell() < end:
                return None
            cut = min(f.tell(), end)
            if cut > cuts[-1]:
                cuts.append(cut)
    if cuts[-1] < end:
        cuts.append(end)
    return cuts


def run_parallel(
    job: Job,
    sink: Sink,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, int, dict[str, dict[str, int]]] | None:
    """Ranges in worker processes, appended in order; None to fall back."""
    parts = max(workers * 4, (job.end - job.start) // PART_BYTES)
    cuts = _boundaries(job.source, job.start, job.end, parts)
    if cuts is None:
        return None
    sink.write(output_header(job))
    jobs = iter([replace_job(job, start=a, end=b) for a, b in pairwise(cuts)])
    counts: dict[str, dict[str, int]] = {}
    rows = residual = lines = 0
    # spawn, not fork: the caller may be a threaded server, and a forked child
    # inherits its locks in whatever state they were.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # A bounded window of parts in flight: finished parts wait in memory for
        # the ones before them, so memory stays ~window x PART_BYTES.
        window: deque[tuple[Job, Future[_PartResult]]] = deque(
            (j, pool.submit(_run_part, j)) for j in islice(jobs, workers * 2)
        )
        try:
            while window:
                part, future = window.popleft()
                try:
                    result = future.result()
                except BrokenProcessPool:
                    return None  # no usable worker (cannot start, or killed)
                if result.fallback:
                    return None
                if result.error is not None:
                    raise _shifted(result.error, lines)
                following = next(jobs, None)
                if following is not None:
                    window.append((following, pool.submit(_run_part, following)))
                sink.write(result.data)
                lines += result.lines
                rows += result.rows
                residual += result.residual
                _merge(counts, result.counts or {})
                if progress is not None:
                    progress(part.end, job.end)
        finally:
            for _, pending in window:
                pending.cancel()
    return rows, residual, counts


def output_header(job: Job) -> bytes:
    """The output's first bytes: the kept columns' CSV header, none for JSONL."""
    engine = engine_for(job)
    return engine.header_text().encode() if isinstance(engine, CsvEngine) else b""


def _merge(into: dict[str, dict[str, int]], other: dict[str, dict[str, int]]) -> None:
    for column, per in other.items():
        into.setdefault(column, {})  # a column with nothing to count still shows
        for label, n in per.items():
            bump(into, column, label, n)
