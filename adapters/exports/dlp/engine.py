"""Streaming DLP transformer for governed exports (CSV and JSON Lines).

The source is read in line-aligned blocks and transformed a column at a time, so
memory stays bounded whatever the file size, and per-value work is mostly C calls
(``map``, ``str.join``, regex scans over a whole column). The output is written to
a hidden temporary file next to the destination and renamed into place only when
the whole export passed, so a failed export never leaves a destination file.

Raw values never reach exceptions, reports or logs: only column names, counts,
recogniser names and row numbers do. Row numbers count data records from 1 (the
CSV header is row 0); for JSON Lines they are line numbers.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

from adapters.exports.dlp.blocks import BLOCK_BYTES, MAX_LINE_BYTES, blocks
from adapters.exports.dlp.csv_engine import (
    CsvEngine,
    parse_header,
    quotes_span_lines,
    sniff,
)
from adapters.exports.dlp.errors import SourceFormatError
from adapters.exports.dlp.parallel import (
    MIN_PARALLEL_BYTES,
    Job,
    Sink,
    engine_for,
    output_header,
    replace_job,
    run_parallel,
)
from domain.values import CLASSIFICATIONS

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

PRESETS = ("tokenize_strict", "mask", "redact", "none")
CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})


@dataclass(frozen=True)
class DlpReport:
    """What an export did: sizes, output digest and per-column action counts."""

    rows: int
    bytes_in: int
    bytes_out: int
    sha256: str
    transforms: dict[str, dict[str, int]]
    residual_hits: int


def _format_of(source: Path) -> str:
    suffix = source.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    raise ValueError(f"unsupported source format {suffix!r} (.csv, .jsonl, .ndjson)")


def transform_file(
    source: Path,
    destination: Path,
    *,
    columns: Mapping[str, str],
    preset: str,
    key: bytes,
    context: str,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> DlpReport:
    """Transform ``source`` into ``destination`` under a DLP preset.

    Args:
        source: a ``.csv`` (header row) or ``.jsonl``/``.ndjson`` file.
        destination: the export; written only if the whole export passes.
        columns: column name -> classification (see ``domain.values``).
        preset: one of ``PRESETS``.
        key: the HMAC key of the tokens.
        context: mixed into every token, so exports for different contexts
            cannot be joined on tokens.
        progress: called with ``(bytes_read, bytes_total)`` as the export runs.
        workers: processes to use; > 1 splits the file into line-aligned byte
            ranges (falls back to one process if a CSV field spans lines).

    Returns:
        The report; ``residual_hits`` is only non-zero for preset ``none``.

    Raises:
        UnclassifiedColumnError: ``tokenize_strict`` met an unclassified column.
        ResidualPiiError: the re-scan of the output found PII.
        SourceFormatError: the source is malformed.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {PRESETS}")
    unknown = sorted({c for c in columns.values() if c not in CLASSIFICATIONS})
    if unknown:
        raise ValueError(f"unknown classification(s): {', '.join(unknown)}")
    if preset == "tokenize_strict" and not key:
        raise ValueError("tokenize_strict needs a non-empty key")
    if workers < 1:
        raise ValueError("workers must be at least 1")
    fmt = _format_of(source)
    job = Job(
        source=str(source),
        start=0,
        end=source.stat().st_size,
        fmt=fmt,
        header=None,
        delimiter=",",
        lineterminator="\n",
        columns=dict(columns),
        preset=preset,
        key=bytes(key),
        context=context,
    )
    header_bytes = b""
    if fmt == "csv":
        with source.open("rb") as f:
            header_bytes = f.readline(MAX_LINE_BYTES)
        if quotes_span_lines(header_bytes):
            raise SourceFormatError(0, "the header row spans lines")
        delimiter, terminator = sniff(header_bytes)
        header = parse_header(header_bytes, delimiter)
        job = replace_job(
            job,
            start=len(header_bytes),
            header=header,
            delimiter=delimiter,
            lineterminator=terminator,
        )
        # Fails closed before anything is written.
        CsvEngine(
            header,
            delimiter=delimiter,
            lineterminator=terminator,
            columns=job.columns,
            preset=preset,
            key=job.key,
            context=context,
        )
    temp = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.partial")
    try:
        with temp.open("wb") as out:
            sink = Sink(out)
            result: tuple[int, int, dict[str, dict[str, int]]] | None = None
            if workers > 1 and job.end - job.start >= MIN_PARALLEL_BYTES:
                result = run_parallel(job, sink, workers, progress)
            if result is None:
                out.seek(0)
                out.truncate()
                sink = Sink(out)
                result = _single(job, sink, progress)
        rows, residual, counts = result
        temp.replace(destination)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return DlpReport(
        rows=rows,
        bytes_in=job.end,
        bytes_out=sink.size,
        sha256=sink.digest.hexdigest(),
        transforms=counts,
        residual_hits=residual,
    )


def _single(
    job: Job, sink: Sink, progress: Callable[[int, int], None] | None
) -> tuple[int, int, dict[str, dict[str, int]]]:
    """One process: blocks, or the csv module when a field spans lines."""
    engine = engine_for(job)
    sink.write(output_header(job))
    lines = 0
    with open(job.source, "rb") as src:  # noqa: PTH123
        for offset, raw, newlines in blocks(src, job.start, job.end):
            if isinstance(engine, CsvEngine):
                parsed = engine.parse_block(raw, lines + 1)
                if parsed is None:
                    _csv_stream(engine, src, offset, lines + 1, sink, job, progress)
                    break
                text = engine.transform_block(parsed, lines + 1)
            else:
                text = engine.transform_block(raw, lines + 1)
            lines += newlines
            sink.write(text.encode())
            if progress is not None:
                progress(min(offset + len(raw), job.end), job.end)
    if progress is not None:
        progress(job.end, job.end)
    return engine.rows, engine.residual, engine.counts


def _csv_stream(
    engine: CsvEngine,
    src: io.BufferedReader,
    offset: int,
    first_row: int,
    sink: Sink,
    job: Job,
    progress: Callable[[int, int], None] | None,
) -> None:
    """The rest of a CSV from ``offset`` through the csv module (multi-line fields)."""
    src.seek(offset)
    text = io.TextIOWrapper(src, encoding="utf-8", newline="")
    reader = csv.reader(
        text, delimiter=engine.delimiter, strict=True, lineterminator="\n"
    )
    row = first_row
    chunk_rows = max(1, BLOCK_BYTES // 256)
    try:
        while True:
            rows: list[list[str]] = []
            try:
                rows.extend(islice(reader, chunk_rows))
            except csv.Error as error:
                raise SourceFormatError(
                    row + len(rows), f"malformed CSV ({error})"
                ) from None
            except UnicodeDecodeError:
                raise SourceFormatError(row + len(rows), "is not valid UTF-8") from None
            if not rows:
                break
            sink.write(engine.transform(rows, row).encode())
            row += len(rows)
            if progress is not None:
                progress(min(src.tell(), job.end), job.end)
    finally:
        text.detach()
