"""The CSV engine: line-aligned blocks to columns, transformed, back to CSV."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from itertools import repeat
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
_PLAIN_KINDS = frozenset({TOKEN, YEAR, EMPTY})


@dataclass(frozen=True)
class _Rows:
    """Records of a block; ``masked`` as in CsvEngine.transform."""

    rows: list[list[str]]
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
            c.name: ValueCache(c.fn) for _, c in self.plan if c.fn is not None
        }
        self.raise_on_residual = preset != "none"
        self.counts: dict[str, dict[str, int]] = {}
        self.rows = 0
        self.residual = 0

    def header_text(self) -> str:
        return self._encode([[name] for name in self.outputs], 1, header=True)

    def parse_block(self, raw: bytes, first_row: int) -> _Rows | None:
        """The records of a line-aligned block; None if a field spans lines."""
        if quotes_span_lines(raw):
            return None
        text = decode_block(raw, first_row)
        if "\r" in text:
            if text.count("\r") != text.count("\r\n"):
                return None  # a lone CR ends a record for the csv module: defer
            text = text.replace("\r\n", "\n")
        masked = False
        if '"' in text:
            unquoted = self._unquote(text)
            if unquoted is None:
                return _Rows(self._csv_lines(text, first_row), masked=False)
            text, masked = unquoted, True
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        rows = list(map(str.split, lines, repeat(self.delimiter)))
        if "" in lines:
            for i, line in enumerate(lines):
                if not line:
                    rows[i] = []  # as the csv module reads a blank line
        return _Rows(rows, masked=masked)

    def _unquote(self, text: str) -> str | None:
        """``text`` with its quoted fields unquoted, if they are all simple.

        Simple: no escaped quote, quotes only around whole fields. Delimiters
        inside become ``_MASKED``, restored per column later. All C-level passes,
        where the csv module would cost a call per line and a frame per record.
        """
        if '""' in text or _MASKED in text:
            return None
        segments = text.split('"')
        outside = segments[0::2]
        bounds = (self.delimiter, "\n")
        # Each opening quote starts a field, each closing quote ends one.
        openers = outside[:-1] if outside[0] else outside[1:-1]
        if not all(map(str.endswith, openers, repeat(bounds))) or not all(
            map(str.startswith, outside[1:], repeat(bounds))
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
        n = len(rows)
        out: list[Sequence[str]] = []
        hits: list[tuple[int, str, str]] = []
        for index, col in self.plan:
            if col.kind == DROP:
                bump(self.counts, col.name, col.label, n)
                continue
            values = columns[index]
            if masked and _MASKED in "".join(values):
                values = tuple(
                    map(str.replace, values, repeat(_MASKED), repeat(self.delimiter))
                )
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
        self, col: Column, values: tuple[str, ...]
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
            cols = [[v or '""' for v in cols[0]]]
        return lt.join(map(d.join, zip(*cols, strict=True))) + lt


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
