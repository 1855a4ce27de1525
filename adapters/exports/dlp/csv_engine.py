"""The CSV engine: line-aligned blocks to columns, transformed, back to CSV."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING

from adapters.exports.dlp import recognisers as rec
from adapters.exports.dlp.blocks import decode_block
from adapters.exports.dlp.errors import (
    ResidualPiiError,
    SourceFormatError,
    UnclassifiedColumnError,
)
from adapters.exports.dlp.masks import (
    DROP,
    EMPTY,
    PASS,
    TEXT,
    TOKEN,
    YEAR,
    ValueCache,
    bump,
    plan_column,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from adapters.exports.dlp.masks import Column

_NOT_QUOTE_OR_NL = bytes(b for b in range(256) if b not in b'"\n')
_DELIMITERS = (",", "\t", ";", "|")
_MASKED = "\x01"  # stands in for a delimiter inside a quoted field
_SEP = "\x00"  # joins a column's values for C-level passes over all of them
_PLAIN_KINDS = frozenset({TOKEN, YEAR, EMPTY})
_FIRST, _LAST = itemgetter(0), itemgetter(-1)


@dataclass(frozen=True)
class Block:
    """A parsed block: its columns when every line is a record of the header's
    width (the common case), else its rows; ``masked`` as in transform."""

    columns: list[list[str]] | None
    rows: list[list[str]] | None
    n: int
    masked: bool


def quotes_span_lines(raw: bytes) -> bool:
    """Whether a line of ``raw`` has an odd number of quotes (a multi-line field).

    Only quotes and newlines are kept, then "" pairs dropped: a quote left over
    belongs to a line with an odd count. Two C passes instead of a loop per line.
    """
    if b'"' not in raw:
        return False
    return b'"' in raw.translate(None, _NOT_QUOTE_OR_NL).replace(b'""', b"")


class CsvEngine:
    """Transforms CSV records chunk by chunk; accumulates the report's counts."""

    def __init__(
        self,
        header: list[str],
        *,
        delimiter: str,
        lineterminator: str,
        columns: Mapping[str, str],
        preset: str,
        key: bytes,
        context: str,
    ) -> None:
        self.width = len(header)
        self.delimiter = delimiter
        self.lineterminator = lineterminator
        self.needs_quotes = re.compile(f'[{re.escape(delimiter)}"\r\n]').search
        if preset == "tokenize_strict":
            # Fail closed on every unclassified column at once, before any output.
            unclassified = [name for name in header if name not in columns]
            if unclassified:
                raise UnclassifiedColumnError(unclassified)
        self.plan = [
            (i, plan_column(name, columns.get(name), preset, key, context))
            for i, name in enumerate(header)
        ]
        self.outputs = [c.name for _, c in self.plan if c.kind != DROP]
        # Outputs that never need quoting: tokens (tok_ + hex), years, empties.
        self.plain_output = [
            c.kind in _PLAIN_KINDS for _, c in self.plan if c.kind != DROP
        ]
        self.caches = {
            c.name: ValueCache(c.fn, batch=c.batch)
            for _, c in self.plan
            if c.fn is not None
        }
        self.raise_on_residual = preset != "none"
        self.counts: dict[str, dict[str, int]] = {}
        self.rows = 0
        self.residual = 0

    def header_text(self) -> str:
        return self._encode([[name] for name in self.outputs], 1, header=True)

    def parse_block(self, raw: bytes, first_row: int) -> Block | None:
        """The records of a line-aligned block; None if a field spans lines."""
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            if quotes_span_lines(raw):
                return None  # the csv module reads on, and finds the bad byte
            text = decode_block(raw, first_row)  # raises, with the row
        if "\r" in text:
            if text.count("\r") != text.count("\r\n"):
                return None  # a lone CR ends a record for the csv module: defer
            text = text.replace("\r\n", "\n")
        masked = False
        if '"' in text:
            segments = text.split('"')
            # Odd segments are inside quotes (a "" escape adds an empty even one):
            # a newline there is a field spanning lines, as quotes_span_lines.
            if "\n" in "".join(segments[1::2]):
                return None
            unquoted = self._unquote(text, segments)
            if unquoted is None:
                rows = self._csv_lines(text, first_row)
                return Block(None, rows, len(rows), masked=False)
            text, masked = unquoted, True
        columns = self._columns(text)
        if columns is not None:
            return Block(columns, None, len(columns[0]), masked=masked)
        rows = self._rows(text)
        return Block(None, rows, len(rows), masked=masked)

    def _rows(self, text: str) -> list[list[str]]:
        """The rows of ``text`` (newline-terminated lines); [] for a blank line."""
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        rows = list(map(str.split, lines, repeat(self.delimiter)))
        if "" in lines:
            for i, line in enumerate(lines):
                if not line:
                    rows[i] = []  # as the csv module reads a blank line
        return rows

    def _columns(self, text: str) -> list[list[str]] | None:
        """The columns of ``text`` (newline-terminated lines), if every line is a
        record of the header's width; None otherwise (blank lines, bad widths).

        Each newline becomes a field of its own, so the block is one flat list of
        fields, one C split; a column is then a stride slice of it. The newline
        fields must sit exactly at every (width + 1)th place: then every line has
        the header's width. No list per row and no transposition.
        """
        d, width = self.delimiter, self.width
        # A blank line (skipped, as csv does, by the rows path) has one field, so
        # the check below rejects it, unless one field is the header's width.
        if width == 1 and (text.startswith("\n") or "\n\n" in text):
            return None
        fields = text.replace("\n", d + "\n" + d).split(d)
        fields.pop()  # the empty field after the last newline
        n = text.count("\n")
        stride = width + 1
        if len(fields) != n * stride or fields[width::stride].count("\n") != n:
            return None
        return [fields[i::stride] for i in range(width)]

    def _unquote(self, text: str, segments: list[str]) -> str | None:
        """``text`` with its quoted fields unquoted, if they are all simple.

        ``segments``: ``text.split('"')``, with no newline inside quotes. Simple:
        no escaped quote, quotes only around whole fields. Delimiters inside
        become ``_MASKED``, restored per column later. All C-level passes, where
        the csv module would cost a call per line and a frame per record.
        """
        # An empty segment inside is a "" (an escaped quote or an empty field).
        if _MASKED in text or "" in segments[1:-1]:
            return None
        outside = segments[0::2]
        # Each opening quote starts a field, each closing quote ends one. With no
        # "" and a final newline, only the first outside segment can be empty.
        openers = outside[:-1] if outside[0] else outside[1:-1]
        before = "".join(map(_LAST, openers))
        after = "".join(map(_FIRST, outside[1:]))
        bounds = len(before) + len(after)
        d = self.delimiter
        if (
            before.count(d) + before.count("\n") + after.count(d) + after.count("\n")
            != bounds
        ):
            return None
        segments[1::2] = map(
            str.replace, segments[1::2], repeat(self.delimiter), repeat(_MASKED)
        )
        return "".join(segments)

    def _csv_lines(self, text: str, first_row: int) -> list[list[str]]:
        """Records of single-line CSV through the csv module (escaped quotes...)."""
        rows: list[list[str]] = []
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        try:
            rows.extend(csv.reader(lines, delimiter=self.delimiter, strict=True))
        except csv.Error as error:
            raise SourceFormatError(
                first_row + len(rows), f"malformed CSV ({error})"
            ) from None
        return rows

    def transform_block(self, block: Block, first_row: int) -> str:
        """Output text for a parsed block whose first record is ``first_row``."""
        if block.columns is not None:
            return self._transform(
                block.columns, block.n, first_row, None, block.masked
            )
        assert block.rows is not None
        return self.transform(block.rows, first_row, masked=block.masked)

    def transform(
        self, rows: list[list[str]], first_row: int, *, masked: bool = False
    ) -> str:
        """Output text for ``rows`` (record ``first_row`` onwards).

        ``masked``: delimiters inside quoted fields are ``_MASKED`` (see _unquote).
        """
        rows, numbers = self._records(rows, first_row)
        if not rows:
            return ""
        columns = list(zip(*rows, strict=True))
        return self._transform(columns, len(rows), first_row, numbers, masked)

    def _transform(
        self,
        columns: Sequence[Sequence[str]],
        n: int,
        first_row: int,
        numbers: list[int] | None,
        masked: bool,
    ) -> str:
        """Output text for ``n`` records as ``columns``; ``numbers`` if not
        consecutive from ``first_row``."""
        out: list[Sequence[str]] = []
        hits: list[tuple[int, str, str]] = []
        for index, col in self.plan:
            if col.kind == DROP:
                bump(self.counts, col.name, col.label, n)
                continue
            values = columns[index]
            if masked:
                values = self._unmask(values)
            result, candidates = self._apply(col, values)
            if col.scan:
                hits.extend(
                    (numbers[i] if numbers else first_row + i, col.name, found)
                    for i, found in rec.scan_column(result, candidates)
                )
            out.append(result)
        if hits:
            self.residual += len(hits)
            if self.raise_on_residual:
                raise ResidualPiiError(hits)
        self.rows += n
        return self._encode(out, n)

    def _unmask(self, values: Sequence[str]) -> Sequence[str]:
        """``values`` with the delimiters _unquote masked put back."""
        joined = _SEP.join(values)
        if _MASKED not in joined:
            return values
        if joined.count(_SEP) == len(values) - 1:
            return joined.replace(_MASKED, self.delimiter).split(_SEP)
        return list(map(str.replace, values, repeat(_MASKED), repeat(self.delimiter)))

    def _records(
        self, rows: list[list[str]], first_row: int
    ) -> tuple[list[list[str]], list[int] | None]:
        """Rows without blank lines, their numbers if any were skipped; checked."""
        numbers: list[int] | None = None
        if [] in rows:  # blank lines: skipped, but they keep their row number
            numbers = [first_row + i for i, row in enumerate(rows) if row]
            rows = [row for row in rows if row]
        if rows and set(map(len, rows)) != {self.width}:
            for i, row in enumerate(rows):
                if len(row) != self.width:
                    number = numbers[i] if numbers else first_row + i
                    raise SourceFormatError(
                        number, f"has {len(row)} fields, the header {self.width}"
                    )
        return rows, numbers

    def _apply(
        self, col: Column, values: Sequence[str]
    ) -> tuple[Sequence[str], list[int] | None]:
        """A column's output values, and the suspects already known (free text)."""
        name, kind, n = col.name, col.kind, len(values)
        if kind == PASS:
            bump(self.counts, name, col.label, n)
            return values, None
        if kind == EMPTY:
            bump(self.counts, name, col.label, n)
            return [""] * n, None
        if kind == TEXT:
            text = list(values)
            return text, rec.redact_column(text, self.counts.setdefault(name, {}))
        assert col.fn is not None
        cache = self.caches.get(name)
        result = cache.map(values) if cache is not None else list(map(col.fn, values))
        empty = result.count("")
        bump(self.counts, name, col.label, n - empty)
        if kind == YEAR:
            empty_in = values.count("")
            bump(self.counts, name, "dob_unparsed", empty - empty_in)
            empty = empty_in
        bump(self.counts, name, "empty", empty)
        return result, None

    def _encode(self, out: list[Sequence[str]], n: int, *, header: bool = False) -> str:
        """CSV text of columns ``out``: minimal quoting, CR and LF always quoted.

        Columns whose action only yields tokens, years or "" are not searched
        (``plain_output``); the others are searched once joined, with ``in``
        (a C memchr-like scan) rather than a regex.
        """
        d, lt = self.delimiter, self.lineterminator
        needs_quotes = self.needs_quotes
        cols: list[Sequence[str]] = []
        for col, plain in zip(out, self.plain_output, strict=True):
            if plain and not header:
                cols.append(col)
                continue
            joined = "".join(col)
            quote = '"' in joined or "\r" in joined or "\n" in joined
            if not quote and d not in joined:
                cols.append(col)
            elif quote:
                cols.append(
                    [
                        '"' + v.replace('"', '""') + '"' if needs_quotes(v) else v
                        for v in col
                    ]
                )
            else:
                # Only the delimiter needs quoting: flag values in one C pass.
                flags = list(map(str.__contains__, col, repeat(d)))
                if all(flags):
                    cols.append(list(map('"{}"'.format, col)))
                else:
                    cols.append(
                        [f'"{v}"' if f else v for v, f in zip(col, flags, strict=True)]
                    )
        if not cols:
            return lt * n  # every column dropped: keep one (empty) line per row
        if len(cols) == 1:
            # A lone empty field must be quoted, or it reads back as a blank line.
            return lt.join([v or '""' for v in cols[0]]) + lt
        # One flat list (value, delimiter, value, ..., terminator) per row, filled
        # by stride slices and joined once: no tuple and no join per row.
        k = len(cols)
        flat = [d] * (2 * k * n)
        for i, col in enumerate(cols):
            flat[2 * i :: 2 * k] = col
        flat[2 * k - 1 :: 2 * k] = [lt] * n
        return "".join(flat)


def sniff(first_line: bytes) -> tuple[str, str]:
    """Delimiter and line terminator from the header line."""
    text = first_line.decode("utf-8", errors="replace")
    counts = [(text.count(d), -i, d) for i, d in enumerate(_DELIMITERS)]
    best = max(counts)
    delimiter = best[2] if best[0] else ","
    return delimiter, "\r\n" if first_line.endswith(b"\r\n") else "\n"


def parse_header(line: bytes, delimiter: str) -> list[str]:
    """The column names of the header line; raises if malformed or duplicated."""
    try:
        text = line.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SourceFormatError(0, "the header is not valid UTF-8") from None
    try:
        header = next(csv.reader([text], delimiter=delimiter, strict=True), [])
    except csv.Error as error:
        raise SourceFormatError(0, f"malformed CSV header ({error})") from None
    if not header:
        raise SourceFormatError(0, "missing header row")
    if len(set(header)) != len(header):
        raise SourceFormatError(0, "duplicate column names in the header")
    return header
