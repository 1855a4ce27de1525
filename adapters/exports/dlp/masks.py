"""What happens to each value: tokens, masks, years and the per-column decision."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from dataclasses import dataclass
from datetime import date
from itertools import compress, repeat
from operator import is_
from typing import TYPE_CHECKING, Protocol, cast

from adapters.exports.dlp.errors import UnclassifiedColumnError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

TOKEN_PREFIX = "tok_"  # noqa: S105 - a marker, not a credential

PASS, DROP, TOKEN, YEAR, MASK, EMPTY, TEXT = (
    "pass",
    "drop",
    "token",
    "year",
    "mask",
    "empty",
    "text",
)
"""The kinds of column action (``Column.kind``)."""
_DROPPED_CLASSES = frozenset({"id.national", "secret"})
_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)
_NOT_DIGITS_OR_NUL = _NOT_DIGITS.replace(b"\0", b"")


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


class Tokenizer:
    """HMAC-SHA-256 tokens keyed per (key, context, column).

    HMAC is built from pre-keyed inner/outer SHA-256 states (RFC 2104) with the
    "context|column|" prefix already absorbed, so a value costs two state copies
    and two 1-block compressions (most of a token's time is those compressions).
    Called on a value it tokenises that value; ``column`` tokenises a column,
    normalising and encoding it as one joined string (C passes over the whole
    column), so only the HMAC steps run once per value.
    """

    def __init__(
        self, key: bytes, context: str, column: str, classification: str
    ) -> None:
        block = hashlib.sha256(key).digest() if len(key) > 64 else key
        block = block.ljust(64, b"\0")
        prefix = f"{context}|{column}|".encode()
        inner_copy = _SHA256(bytes(b ^ 0x36 for b in block) + prefix).copy
        outer_copy = _SHA256(bytes(b ^ 0x5C for b in block)).copy

        def token(message: bytes) -> str:
            # The HMAC steps inline: a nested call per value would cost more
            # than the hash copy. An empty message is an empty value: no token.
            if not message:
                return ""
            h = inner_copy()
            h.update(message)
            o = outer_copy()
            o.update(h.digest())
            return TOKEN_PREFIX + o.hexdigest()[:32]

        self._token = token
        self._message, self._messages = _MESSAGES.get(
            classification, (_plain_message, _plain_messages)
        )

    def __call__(self, value: str) -> str:
        return self._token(self._message(value))

    def column(self, values: Sequence[str]) -> list[str]:
        """``[self(v) for v in values]``."""
        return list(map(self._token, self._messages(values)))


def _email_message(value: str) -> bytes:
    # Equal identities tokenise equally: " Ann@X.org" == "ann@x.org".
    return value.strip().lower().encode()


def _phone_message(value: str) -> bytes:
    # The digits; a value without any ("n/a") keeps distinct junk distinct.
    return value.encode().translate(None, _NOT_DIGITS) or value.strip().encode()


def _plain_message(value: str) -> bytes:
    return value.encode()


def _split_encoded(joined: str, n: int) -> list[bytes] | None:
    """The UTF-8 of each of ``n`` values joined by NULs; None if one holds a NUL."""
    if joined.count("\0") != n - 1:
        return None
    return joined.encode().split(b"\0")


def _email_messages(values: Sequence[str]) -> list[bytes]:
    # lower() of the joined column is lower() of each value: NUL is uncased.
    pieces = _split_encoded("\0".join(map(str.strip, values)).lower(), len(values))
    return list(map(_email_message, values)) if pieces is None else pieces


def _phone_messages(values: Sequence[str]) -> list[bytes]:
    joined = "\0".join(values)
    if joined.count("\0") != len(values) - 1:
        return list(map(_phone_message, values))
    digits = joined.encode().translate(None, _NOT_DIGITS_OR_NUL).split(b"\0")
    if b"" in digits:
        for i, piece in enumerate(digits):
            if not piece:
                digits[i] = values[i].strip().encode()
    return digits


def _plain_messages(values: Sequence[str]) -> list[bytes]:
    pieces = _split_encoded("\0".join(values), len(values))
    return list(map(_plain_message, values)) if pieces is None else pieces


_MESSAGES: dict[
    str, tuple[Callable[[str], bytes], Callable[[Sequence[str]], list[bytes]]]
] = {
    "pii.email": (_email_message, _email_messages),
    "pii.phone": (_phone_message, _phone_messages),
}


class ValueCache:
    """A column's outputs for repeated values, computed once (bounded memory).

    A token is an HMAC (~1 us in CPython, two state copies and two SHA-256
    compressions), a year a date parse; names, cities, birth dates or customer
    ids repeat across rows, so a value's output is looked up instead. Once warm
    a column costs one C pass (``map(dict.get)``); only misses run Python. The
    cache holds at most ``limit`` values (cleared when full), and switches
    itself off for the rest of the export when, after ``probe`` values, fewer
    than ``min_hit_ratio`` of the lookups hit: a column of unique values (emails)
    then costs what it did without a cache.
    """

    def __init__(
        self,
        fn: Callable[[str], str],
        *,
        batch: Callable[[Sequence[str]], list[str]] | None = None,
        limit: int = 1 << 15,
        probe: int = 1 << 14,
        min_hit_ratio: float = 0.25,
    ) -> None:
        self.fn = fn
        self.batch = batch if batch is not None else _mapper(fn)
        self.limit = limit
        self.probe = probe
        self.min_hit_ratio = min_hit_ratio
        self.tokens: dict[str, str] = {}
        self.enabled = True
        self.lookups = 0
        self.misses = 0

    def map(self, values: Sequence[str]) -> list[str]:
        """``[fn(v) for v in values]``, from the cache where it can."""
        if not self.enabled:
            return self.batch(values)
        tokens = self.tokens
        found = list(map(tokens.get, values))
        self.lookups += len(values)
        if None not in found:
            return cast("list[str]", found)  # all hits: one C pass
        new = set(compress(values, map(is_, found, repeat(None))))
        self.misses += len(new)
        if self.lookups >= self.probe and self.misses > self.lookups * (
            1 - self.min_hit_ratio
        ):
            self.enabled = False
            tokens.clear()
            return self.batch(values)
        if len(tokens) + len(new) > self.limit:
            tokens.clear()
            new = set(values)
        misses = list(new)
        tokens.update(zip(misses, self.batch(misses), strict=True))
        return list(map(tokens.__getitem__, values))


def _mapper(fn: Callable[[str], str]) -> Callable[[Sequence[str]], list[str]]:
    def batch(values: Sequence[str]) -> list[str]:
        return list(map(fn, values))

    return batch


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
class Column:
    """What happens to one column: kind, value function, report label, re-scan.

    ``batch``, if set, is ``fn`` over a whole column at once (same outputs).
    """

    name: str
    kind: str
    label: str
    fn: Callable[[str], str] | None = None
    scan: bool = False
    batch: Callable[[Sequence[str]], list[str]] | None = None


def plan_column(  # noqa: PLR0911 - one decision table, read top to bottom
    name: str, classification: str | None, preset: str, key: bytes, context: str
) -> Column:
    """The action for a column under a preset (raises for unclassified+strict)."""
    if preset == "none":
        return Column(name, PASS, "passed", scan=True)
    if classification is None:
        if preset == "tokenize_strict":
            raise UnclassifiedColumnError([name])
        return Column(name, DROP, "dropped_unclassified")
    if classification in _DROPPED_CLASSES:
        return Column(name, DROP, "dropped")
    if classification == "public":
        return Column(name, PASS, "passed", scan=True)
    if preset == "redact":
        return Column(name, EMPTY, "emptied")
    if classification == "pii.dob":
        return Column(name, YEAR, "generalized", dob_year)
    if classification == "free_text":
        return Column(name, TEXT, "redacted", scan=True)
    if preset == "mask":
        return Column(name, MASK, "masked", _MASKERS[classification], scan=True)
    tokens = Tokenizer(key, context, name, classification)
    return Column(name, TOKEN, "tokenized", tokens, batch=tokens.column)


def bump(counts: dict[str, dict[str, int]], column: str, label: str, n: int) -> None:
    """Add ``n`` to ``column``'s count for ``label``; nothing is added for 0."""
    if n:
        per = counts.setdefault(column, {})
        per[label] = per.get(label, 0) + n
