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

import contextlib
import csv
import hashlib
import importlib
import io
import json
import multiprocessing
import re
import uuid
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import date
from itertools import islice, pairwise, repeat
from typing import TYPE_CHECKING, Any, Protocol

from adapters.exports.dlp import recognisers as rec
from domain.values import CLASSIFICATIONS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from concurrent.futures import Future
    from pathlib import Path

PRESETS = ("tokenize_strict", "mask", "redact", "none")
CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
TOKEN_PREFIX = "tok_"  # noqa: S105 - a marker, not a credential

BLOCK_BYTES = 256 * 1024  # small enough for a flat profile, big enough to amortise
MAX_LINE_BYTES = 16 * 1024 * 1024  # a "line" longer than this is not a record
PART_BYTES = 8 * 1024 * 1024  # parallel work unit: balances cores, bounds memory
MIN_PARALLEL_BYTES = 4 * 1024 * 1024  # below this, process start-up costs more

_PASS, _DROP, _TOKEN, _YEAR, _MASK, _EMPTY, _TEXT = (
    "pass",
    "drop",
    "token",
    "year",
    "mask",
    "empty",
    "text",
)
_DROPPED_CLASSES = frozenset({"id.national", "secret"})
_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)
_NOT_QUOTE_OR_NL = bytes(b for b in range(256) if b not in b'"\n')
_DELIMITERS = (",", "\t", ";", "|")
_MASKED = "\x01"  # stands in for a delimiter inside a quoted field


def _reject_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; re-serialising them would write invalid JSON.
    raise ValueError(name)


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


class DlpError(Exception):
    """Base of the errors an export can fail with."""


class UnclassifiedColumnError(DlpError):
    """A column has no classification and the preset fails closed."""

    def __init__(self, columns: Sequence[str], row: int | None = None) -> None:
        self.columns = tuple(columns)
        self.row = row
        where = f" (row {row})" if row is not None else ""
        super().__init__(f"unclassified column(s){where}: {', '.join(self.columns)}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.columns, self.row)


class ResidualPiiError(DlpError):
    """The re-scan of the output found PII; carries where, never what."""

    def __init__(self, hits: Sequence[tuple[int, str, str]]) -> None:
        self.hits = list(hits)
        shown = ", ".join(f"row {r} column {c!r} ({k})" for r, c, k in self.hits[:10])
        more = f" and {len(self.hits) - 10} more" if len(self.hits) > 10 else ""
        super().__init__(f"residual PII in the output: {shown}{more}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.hits,)


class SourceFormatError(DlpError):
    """The source is not well-formed CSV / JSON Lines."""

    def __init__(self, row: int, problem: str) -> None:
        self.row = row
        self.problem = problem
        super().__init__(f"row {row}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.row, self.problem)


@dataclass(frozen=True)
class DlpReport:
    """What an export did: sizes, output digest and per-column action counts."""

    rows: int
    bytes_in: int
    bytes_out: int
    sha256: str
    transforms: dict[str, dict[str, int]]
    residual_hits: int


# --------------------------------------------------------------------------- values


class _Hash(Protocol):
    def copy(self) -> _Hash: ...
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


def _builtin_sha256() -> Callable[[bytes], _Hash]:
    """CPython's own SHA-256 when present, else OpenSSL's.

    A token costs two state copies; copying the built-in state is a memcpy, while
    OpenSSL's EVP context copy allocates, which makes tokens ~1.5x slower.
    """
    for name in ("_sha2", "_sha256"):  # 3.12+, 3.11
        with contextlib.suppress(ImportError, AttributeError):
            constructor: Callable[[bytes], _Hash] = importlib.import_module(name).sha256
            return constructor
    return hashlib.sha256


_SHA256 = _builtin_sha256()


def _tokenizer(
    key: bytes, context: str, column: str, classification: str
) -> Callable[[str], str]:
    """HMAC-SHA-256 tokens keyed per (key, context, column).

    HMAC is built from pre-keyed inner/outer SHA-256 states (RFC 2104) with the
    "context|column|" prefix already absorbed, so a value costs two state copies
    and two 1-block compressions. The function bodies repeat the HMAC steps on
    purpose: a nested call per value would cost more than the hash copy.
    """
    block = hashlib.sha256(key).digest() if len(key) > 64 else key
    block = block.ljust(64, b"\0")
    prefix = f"{context}|{column}|".encode()
    inner_copy = _SHA256(bytes(b ^ 0x36 for b in block) + prefix).copy
    outer_copy = _SHA256(bytes(b ^ 0x5C for b in block)).copy

    if classification == "pii.email":

        def email(value: str) -> str:
            # Equal identities tokenise equally: " Ann@X.org" == "ann@x.org".
            normal = value.strip().lower()
            if not normal:
                return ""
            h = inner_copy()
            h.update(normal.encode())
            o = outer_copy()
            o.update(h.digest())
            return TOKEN_PREFIX + o.hexdigest()[:32]

        return email
    if classification == "pii.phone":

        def phone(value: str) -> str:
            data = value.encode().translate(None, _NOT_DIGITS)
            if not data:
                # Not a number at all ("n/a"): keep distinct junk distinct.
                data = value.strip().encode()
                if not data:
                    return ""
            h = inner_copy()
            h.update(data)
            o = outer_copy()
            o.update(h.digest())
            return TOKEN_PREFIX + o.hexdigest()[:32]

        return phone

    def plain(value: str) -> str:
        if not value:
            return ""
        h = inner_copy()
        h.update(value.encode())
        o = outer_copy()
        o.update(h.digest())
        return TOKEN_PREFIX + o.hexdigest()[:32]

    return plain


def dob_year(value: str) -> str:
    """The year of a YYYY-MM-DD, YYYYMMDD or DD/MM/YYYY date, else ""."""
    n = len(value)
    if (n == 10 and value[4] == "-" and value[7] == "-") or (
        n == 8 and value.isdecimal()
    ):
        iso = value
    elif n == 10 and value[2] == "/" and value[5] == "/":
        iso = f"{value[6:]}-{value[3:5]}-{value[:2]}"
    else:
        stripped = value.strip()
        return dob_year(stripped) if stripped != value else ""
    try:
        # C parser; accepts ASCII digits only and checks the calendar.
        date.fromisoformat(iso)
    except ValueError:
        return ""
    return iso[:4]


def _mask_email(value: str) -> str:
    local, at, domain = value.strip().rpartition("@")
    host, dot, tld = domain.rpartition(".")
    if not (at and local and dot and host and tld):
        return "***" if value.strip() else ""
    return f"{local[0]}***@{host[0]}***.{tld}"


def _mask_phone(value: str) -> str:
    digits = value.encode().translate(None, _NOT_DIGITS).decode()
    if len(digits) < 3:
        return "***" if value.strip() else ""
    return "*" * (len(digits) - 2) + digits[-2:]


def _mask_name(value: str) -> str:
    s = value.strip()
    return s[0] + "***" if s else ""


def _mask_address(value: str) -> str:
    # No shape hint: any part of an address (number, street, postcode) narrows
    # the person down more than a name's initial does.
    return "***" if value.strip() else ""


_MASKERS: dict[str, Callable[[str], str]] = {
    "pii.name": _mask_name,
    "pii.email": _mask_email,
    "pii.phone": _mask_phone,
    "pii.address": _mask_address,
}


@dataclass(frozen=True)
class _Rows:
    """Records of a block; ``masked`` as in _CsvEngine.transform."""

    rows: list[list[str]]
    masked: bool


@dataclass(frozen=True)
class _Column:
    """What happens to one column: kind, value function, report label, re-scan."""

    name: str
    kind: str
    label: str
    fn: Callable[[str], str] | None = None
    scan: bool = False


def _column(  # noqa: PLR0911 - one decision table, read top to bottom
    name: str, classification: str | None, preset: str, key: bytes, context: str
) -> _Column:
    """The action for a column under a preset (raises for unclassified+strict)."""
    if preset == "none":
        return _Column(name, _PASS, "passed", scan=True)
    if classification is None:
        if preset == "tokenize_strict":
            raise UnclassifiedColumnError([name])
        return _Column(name, _DROP, "dropped_unclassified")
    if classification in _DROPPED_CLASSES:
        return _Column(name, _DROP, "dropped")
    if classification == "public":
        return _Column(name, _PASS, "passed", scan=True)
    if preset == "redact":
        return _Column(name, _EMPTY, "emptied")
    if classification == "pii.dob":
        return _Column(name, _YEAR, "generalized", dob_year)
    if classification == "free_text":
        return _Column(name, _TEXT, "redacted", scan=True)
    if preset == "mask":
        return _Column(name, _MASK, "masked", _MASKERS[classification], scan=True)
    return _Column(
        name, _TOKEN, "tokenized", _tokenizer(key, context, name, classification)
    )


def _bump(counts: dict[str, dict[str, int]], column: str, label: str, n: int) -> None:
    if n:
        per = counts.setdefault(column, {})
        per[label] = per.get(label, 0) + n


def _merge(into: dict[str, dict[str, int]], other: dict[str, dict[str, int]]) -> None:
    for column, per in other.items():
        into.setdefault(column, {})  # a column with nothing to count still shows
        for label, n in per.items():
            _bump(into, column, label, n)


# ----------------------------------------------------------------------------- CSV


def _quotes_span_lines(raw: bytes) -> bool:
    """Whether a line of ``raw`` has an odd number of quotes (a multi-line field).

    Only quotes and newlines are kept, then "" pairs dropped: a quote left over
    belongs to a line with an odd count. Two C passes instead of a loop per line.
    """
    if b'"' not in raw:
        return False
    return b'"' in raw.translate(None, _NOT_QUOTE_OR_NL).replace(b'""', b"")


def _decode(raw: bytes, first_row: int) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        row = first_row + raw.count(b"\n", 0, error.start)
        raise SourceFormatError(row, "is not valid UTF-8") from None


class _CsvEngine:
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
            (i, _column(name, columns.get(name), preset, key, context))
            for i, name in enumerate(header)
        ]
        self.outputs = [c.name for _, c in self.plan if c.kind != _DROP]
        self.raise_on_residual = preset != "none"
        self.counts: dict[str, dict[str, int]] = {}
        self.rows = 0
        self.residual = 0

    def header_text(self) -> str:
        return self._encode([[name] for name in self.outputs], 1)

    def parse_block(self, raw: bytes, first_row: int) -> _Rows | None:
        """The records of a line-aligned block; None if a field spans lines."""
        if _quotes_span_lines(raw):
            return None
        text = _decode(raw, first_row)
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
            if col.kind == _DROP:
                _bump(self.counts, col.name, col.label, n)
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
        self, col: _Column, values: tuple[str, ...]
    ) -> tuple[Sequence[str], list[int] | None]:
        """A column's output values, and the suspects already known (free text)."""
        name, kind, n = col.name, col.kind, len(values)
        if kind == _PASS:
            _bump(self.counts, name, col.label, n)
            return values, None
        if kind == _EMPTY:
            _bump(self.counts, name, col.label, n)
            return [""] * n, None
        if kind == _TEXT:
            text = list(values)
            return text, rec.redact_column(text, self.counts.setdefault(name, {}))
        assert col.fn is not None
        result = list(map(col.fn, values))
        empty = result.count("")
        _bump(self.counts, name, col.label, n - empty)
        if kind == _YEAR:
            empty_in = values.count("")
            _bump(self.counts, name, "dob_unparsed", empty - empty_in)
            empty = empty_in
        _bump(self.counts, name, "empty", empty)
        return result, None

    def _encode(self, out: list[Sequence[str]], n: int) -> str:
        """CSV text of columns ``out``: minimal quoting, CR and LF always quoted."""
        d, lt = self.delimiter, self.lineterminator
        needs_quotes = self.needs_quotes
        cols: list[Sequence[str]] = []
        for col in out:
            joined = "".join(col)
            if not needs_quotes(joined):
                cols.append(col)
            elif '"' in joined or "\r" in joined or "\n" in joined:
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


def _sniff(first_line: bytes) -> tuple[str, str]:
    """Delimiter and line terminator from the header line."""
    text = first_line.decode("utf-8", errors="replace")
    counts = [(text.count(d), -i, d) for i, d in enumerate(_DELIMITERS)]
    best = max(counts)
    delimiter = best[2] if best[0] else ","
    return delimiter, "\r\n" if first_line.endswith(b"\r\n") else "\n"


def _parse_header(line: bytes, delimiter: str) -> list[str]:
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


# ----------------------------------------------------------------------- JSON Lines


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class _JsonlEngine:
    """Transforms JSON Lines blocks; columns are planned as keys first appear."""

    def __init__(
        self, *, columns: Mapping[str, str], preset: str, key: bytes, context: str
    ) -> None:
        self.columns = columns
        self.preset = preset
        self.key = key
        self.context = context
        self.plan: dict[str, _Column] = {}
        self.raise_on_residual = preset != "none"
        self.counts: dict[str, dict[str, int]] = {}
        self.rows = 0
        self.residual = 0

    def _plan(self, obj: dict[str, Any], line: int) -> None:
        missing = [k for k in obj if k not in self.plan]
        unclassified = [k for k in missing if k not in self.columns]
        if unclassified and self.preset == "tokenize_strict":
            raise UnclassifiedColumnError(sorted(unclassified), row=line)
        for k in missing:
            self.plan[k] = _column(
                k, self.columns.get(k), self.preset, self.key, self.context
            )

    def transform_block(self, raw: bytes, first_line: int) -> str:
        """Output text for a line-aligned block starting at line ``first_line``."""
        lines = _decode(raw, first_line).split("\n")
        if lines[-1] == "":
            lines.pop()
        out: list[str] = []
        scans: dict[str, tuple[list[int], list[str]]] = {}
        decode = _JSON_DECODER.decode
        for number, line in enumerate(lines, first_line):
            if not line.strip():
                continue
            try:
                obj = decode(line)
            except ValueError:
                raise SourceFormatError(number, "is not valid JSON") from None
            if not isinstance(obj, dict):
                raise SourceFormatError(number, "is not a JSON object")
            result = self._object(obj, number, scans)
            out.append(json.dumps(result, sort_keys=True, separators=(",", ":")) + "\n")
        hits = [
            (numbers[i], name, found)
            for name, (numbers, texts) in scans.items()
            for i, found in rec.scan_column(texts)
        ]
        if hits:
            self.residual += len(hits)
            if self.raise_on_residual:
                raise ResidualPiiError(sorted(hits))
        self.rows += len(out)
        return "".join(out)

    def _object(
        self,
        obj: dict[str, Any],
        number: int,
        scans: dict[str, tuple[list[int], list[str]]],
    ) -> dict[str, Any]:
        """The output object; queues the values to re-scan in ``scans``."""
        if not obj.keys() <= self.plan.keys():
            self._plan(obj, number)
        result: dict[str, Any] = {}
        for name, value in obj.items():
            col = self.plan[name]
            per = self.counts.setdefault(name, {})
            label, value_out = self._value(col, value, per)
            if label:
                per[label] = per.get(label, 0) + 1
            if col.kind == _DROP:
                continue
            result[name] = value_out
            if col.scan and value_out is not None and value_out != "":
                numbers, texts = scans.setdefault(name, ([], []))
                numbers.append(number)
                texts.append(_as_text(value_out))
        return result

    @staticmethod
    def _value(  # noqa: PLR0911 - one case per column kind
        col: _Column, value: Any, per: dict[str, int]
    ) -> tuple[str, Any]:
        """(report label, output value) of one JSON value; "" if counted already."""
        kind = col.kind
        if kind in {_PASS, _DROP}:
            return col.label, value
        if value is None or value == "":
            if kind == _TEXT:
                return "", value
            return ("emptied" if kind == _EMPTY else "empty"), value
        if kind == _EMPTY:
            return col.label, ""
        text = _as_text(value)
        if kind == _TEXT:
            redacted = rec.redact(text, per)
            return "", value if redacted == text else redacted
        assert col.fn is not None
        result = col.fn(text)
        if result:
            return col.label, result
        return ("dob_unparsed" if kind == _YEAR else "empty"), result


# ------------------------------------------------------------------- block reading


def _blocks(f: io.BufferedReader, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, raw)`` blocks of ``[start, end)``, each ending with a newline."""
    f.seek(start)
    pos = start  # file offset of the end of ``carry``
    carry = b""
    lines = 0
    while pos < end:
        data = f.read(min(BLOCK_BYTES, end - pos))
        if not data:
            break
        pos += len(data)
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            if len(buf) > MAX_LINE_BYTES:
                raise SourceFormatError(lines + 1, "line longer than 16 MiB")
            carry = buf
            continue
        lines += buf.count(b"\n", 0, cut)
        yield pos - len(buf), buf[:cut]
        carry = buf[cut:]
    if carry:
        yield pos - len(carry), carry + b"\n"


# --------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class _Job:
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


def _engine(job: _Job) -> _CsvEngine | _JsonlEngine:
    if job.fmt == "csv":
        assert job.header is not None
        return _CsvEngine(
            job.header,
            delimiter=job.delimiter,
            lineterminator=job.lineterminator,
            columns=job.columns,
            preset=job.preset,
            key=job.key,
            context=job.context,
        )
    return _JsonlEngine(
        columns=job.columns, preset=job.preset, key=job.key, context=job.context
    )


def _run_part(job: _Job) -> _PartResult:
    """Transform one range (in a worker process); the output travels back in memory.

    Parts are small (PART_BYTES) and few are in flight, so this stays bounded,
    and it spares writing, re-reading and deleting a part file per range. Row
    numbers in errors are local to the range; the parent shifts them.
    """
    engine = _engine(job)
    result = _PartResult()
    chunks: list[bytes] = []
    with open(job.source, "rb") as src:  # noqa: PTH123
        try:
            for _, raw in _blocks(src, job.start, job.end):
                first = result.lines + 1
                if isinstance(engine, _CsvEngine):
                    parsed = engine.parse_block(raw, first)
                    if parsed is None:
                        result.fallback = True
                        return result
                    text = engine.transform(parsed.rows, first, masked=parsed.masked)
                else:
                    text = engine.transform_block(raw, first)
                result.lines += raw.count(b"\n")
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


# ------------------------------------------------------------------------- exports


class _Sink:
    """The output file: hashes and counts what is written."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self.f = f
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        self.f.write(data)
        self.size += len(data)


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
    job = _Job(
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
        if _quotes_span_lines(header_bytes):
            raise SourceFormatError(0, "the header row spans lines")
        delimiter, terminator = _sniff(header_bytes)
        header = _parse_header(header_bytes, delimiter)
        job = _replace(
            job,
            start=len(header_bytes),
            header=header,
            delimiter=delimiter,
            lineterminator=terminator,
        )
        # Fails closed before anything is written.
        _CsvEngine(
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
            sink = _Sink(out)
            result: tuple[int, int, dict[str, dict[str, int]]] | None = None
            if workers > 1 and job.end - job.start >= MIN_PARALLEL_BYTES:
                result = _parallel(job, sink, workers, progress)
            if result is None:
                out.seek(0)
                out.truncate()
                sink = _Sink(out)
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


def _replace(job: _Job, **changes: Any) -> _Job:
    fields = dict(job.__dict__)
    fields.update(changes)
    return _Job(**fields)


def _single(
    job: _Job, sink: _Sink, progress: Callable[[int, int], None] | None
) -> tuple[int, int, dict[str, dict[str, int]]]:
    """One process: blocks, or the csv module when a field spans lines."""
    engine = _engine(job)
    sink.write(_header(job))
    lines = 0
    with open(job.source, "rb") as src:  # noqa: PTH123
        for offset, raw in _blocks(src, job.start, job.end):
            if isinstance(engine, _CsvEngine):
                parsed = engine.parse_block(raw, lines + 1)
                if parsed is None:
                    _csv_stream(engine, src, offset, lines + 1, sink, job, progress)
                    break
                text = engine.transform(parsed.rows, lines + 1, masked=parsed.masked)
            else:
                text = engine.transform_block(raw, lines + 1)
            lines += raw.count(b"\n")
            sink.write(text.encode())
            if progress is not None:
                progress(min(offset + len(raw), job.end), job.end)
    if progress is not None:
        progress(job.end, job.end)
    return engine.rows, engine.residual, engine.counts


def _csv_stream(
    engine: _CsvEngine,
    src: io.BufferedReader,
    offset: int,
    first_row: int,
    sink: _Sink,
    job: _Job,
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


def _parallel(
    job: _Job,
    sink: _Sink,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, int, dict[str, dict[str, int]]] | None:
    """Ranges in worker processes, appended in order; None to fall back."""
    parts = max(workers * 4, (job.end - job.start) // PART_BYTES)
    cuts = _boundaries(job.source, job.start, job.end, parts)
    if cuts is None:
        return None
    sink.write(_header(job))
    jobs = iter([_replace(job, start=a, end=b) for a, b in pairwise(cuts)])
    counts: dict[str, dict[str, int]] = {}
    rows = residual = lines = 0
    # spawn, not fork: the caller may be a threaded server, and a forked child
    # inherits its locks in whatever state they were.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # A bounded window of parts in flight: finished parts wait in memory for
        # the ones before them, so memory stays ~window x PART_BYTES.
        window: deque[tuple[_Job, Future[_PartResult]]] = deque(
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


def _header(job: _Job) -> bytes:
    engine = _engine(job)
    return engine.header_text().encode() if isinstance(engine, _CsvEngine) else b""
