"""Edge limits on JSON bodies, checked before msgspec decodes them.

msgspec decodes nested arrays and objects by recursion, so a body of 100 000
``[`` ends in a RecursionError (a 500 with a traceback); and of two equal keys
it silently keeps the last, so ``{"name": "a", "name": "b"}`` means whatever
the last one says. Every JSON body is therefore checked first, for every route:

- nesting at most ``MAX_DEPTH`` (64) arrays/objects deep (rule ``max-depth``);
- at most ``MAX_ITEMS`` (10 000) elements per array (``max-array-length``)
  and members per object (``max-object-members``); a schema's own, smaller
  ``max_length`` still applies after decoding;
- no key twice in one object (``duplicate-key``, naming the key's path).

Each is a 400 problem. The check is vectorised (numpy) over the body's bytes,
no Python loop per character, nor per key past a few hundred (those are
hashed in numpy, and only equal hashes compared): about 60 µs for a 2 KB body,
2 ms for 1 MiB of strings, 30 ms for 1 MiB dense with keys (msgspec: 7 ms),
linear in the size. It only looks at the structure; anything
malformed is left for msgspec to report where it breaks (msgspec stops at the
first error, so the depth it could reach is the depth checked here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from api.problems import Problem

if TYPE_CHECKING:
    import numpy.typing as npt

MAX_DEPTH = 64
MAX_ITEMS = 10_000
_SHOWN = 64
"""Key text beyond this is elided in a problem (the key is the client's)."""
_SMALL = 8192
"""Bodies below this size (and with few brackets) take the quick path."""
_FEW_KEYS = 256
"""Up to this many keys a Python set is quicker than hashing them in numpy."""
_BASE = np.uint64(0x100000001B3)  # the 64-bit FNV prime: odd, so no zero divisor

_QUOTE, _BACKSLASH, _COMMA, _COLON = b'"\\,:'
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1
_STRUCTURAL = np.zeros(256, dtype=np.bool_)
_STRUCTURAL[list(b"[]{},:")] = True


def _refusal(field: str, rule: str, message: str) -> Problem:
    return Problem(
        400,
        f"{field}: {message}",
        errors=[{"field": field, "rule": rule, "message": message}],
    )


@dataclass(frozen=True, slots=True)
class _Structure:
    """The body's structural tokens ([ ] { } , : outside strings), in order."""

    body: bytes
    quotes: npt.NDArray[np.intp]
    """Offsets of the unescaped double quotes (string boundaries)."""
    slashes: npt.NDArray[np.int64] | None
    """Backslashes up to and including each offset (None: there are none)."""
    at: npt.NDArray[np.intp]
    """Offset of each token in the body."""
    char: npt.NDArray[np.uint8]
    owner: npt.NDArray[np.intp]
    """Per token: the container it belongs to (an opener belongs to its own)."""
    opener: npt.NDArray[np.intp]
    """Per container: the index of the token that opens it."""


def check_body(body: bytes) -> None:
    """Refuse a JSON body nested too deep, too long or with a repeated key (400)."""
    if _plainly_within(body):
        return
    data = np.frombuffer(body, dtype=np.uint8)
    quotes, slashes = _string_quotes(data, body)
    at = _STRUCTURAL[data].nonzero()[0]
    at = at[(np.searchsorted(quotes, at) & 1) == 0]  # even quotes before: outside
    if at.size == 0:
        return
    char = data[at]
    step = _STEP[char]
    depth = np.cumsum(step, dtype=np.int32)
    if int(depth.max()) > MAX_DEPTH:
        raise _refusal("body", "max-depth", f"nested deeper than {MAX_DEPTH} levels")
    if step[0] != 1 or depth.min() < 0 or depth[-1] != 0 or not depth[:-1].all():
        return  # unbalanced or not one value: msgspec refuses it where it breaks
    structure = _structure(body, (quotes, slashes), at, char, step, depth)
    _check_members(structure)
    _check_keys(structure)


def _plainly_within(body: bytes) -> bool:
    """The common small body, passed in a few µs instead of numpy's ~70.

    Fewer brackets than the depth limit and fewer bytes than the member limit
    cannot break either; the C json scanner then finds a repeated key. Any
    doubt (a repeat, a malformed body) goes to the full check, which names
    the field.
    """
    if len(body) >= _SMALL or body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        return False
    try:
        json.loads(body, object_pairs_hook=_unique)
    except (ValueError, _RepeatedKeyError):
        return False
    return True


class _RepeatedKeyError(Exception):
    pass


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise _RepeatedKeyError
    return found


def _string_quotes(
    data: npt.NDArray[np.uint8], body: bytes
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64] | None]:
    """Offsets of the quotes that open or close strings (not the escaped ones),
    and the running count of backslashes (None when the body has none)."""
    quotes = (data == _QUOTE).nonzero()[0]
    if b"\\" not in body:
        return quotes, None
    # A quote is escaped when an odd run of backslashes ends right before it.
    slashes = data == _BACKSLASH
    seen = np.cumsum(slashes, dtype=np.int64)
    last_other = np.maximum.accumulate(np.where(slashes, 0, seen))
    before = np.maximum(quotes - 1, 0)
    run = np.where(quotes > 0, (seen - last_other)[before], 0)
    return quotes[(run & 1) == 0], seen


def _structure(
    body: bytes,
    strings: tuple[npt.NDArray[np.intp], npt.NDArray[np.int64] | None],
    at: npt.NDArray[np.intp],
    char: npt.NDArray[np.uint8],
    step: npt.NDArray[np.int8],
    depth: npt.NDArray[np.int32],
) -> _Structure:
    """Tokens grouped by nesting level: within a level, in body order, each
    token belongs to the last container opened at that level (a stable sort
    by level, radix on int8, then a running count of openers)."""
    level = (depth + (step < 0)).astype(np.int8)  # a closer is its container's
    order = np.argsort(level, kind="stable")
    count = np.cumsum(step[order] > 0) - 1
    owner = np.empty_like(count)
    owner[order] = count
    openers = np.flatnonzero(step > 0)
    opener = np.empty(openers.size, dtype=np.intp)
    opener[owner[openers]] = openers
    return _Structure(body, *strings, at, char, owner, opener)


def _check_members(structure: _Structure) -> None:
    commas = structure.char == _COMMA
    if np.count_nonzero(commas) < MAX_ITEMS:
        return  # no container can hold more members than commas + 1
    members = np.bincount(structure.owner[commas]) + 1
    widest = int(np.argmax(members))
    if members[widest] <= MAX_ITEMS:
        return
    is_array = structure.char[structure.opener[widest]] == ord("[")
    rule, what = (
        ("max-array-length", "elements") if is_array else ("max-object-members", "keys")
    )
    field = _path(structure, widest)
    raise _refusal(field, rule, f"more than {MAX_ITEMS} {what}")


def _check_keys(structure: _Structure) -> None:
    colons = (structure.char == _COLON).nonzero()[0]
    if colons.size < 2 or structure.quotes.size < 2:
        return  # fewer than two keys (or keys that are no strings: malformed)
    owners = structure.owner[colons]
    starts, stops = _key_spans(structure, colons)
    if colons.size > _FEW_KEYS:  # narrow down to the keys that may repeat
        suspects = _suspects(structure, owners, starts, stops)
        owners, starts, stops = owners[suspects], starts[suspects], stops[suspects]
    seen: set[tuple[int, bytes]] = set()
    keys = _decoded(structure, starts, stops)
    for owner, key in zip(owners.tolist(), keys, strict=True):
        if (owner, key) in seen:
            path = _path(structure, owner)
            field = _shown(key) if path == "body" else f"{path}.{_shown(key)}"
            raise _refusal(field, "duplicate-key", "the key appears twice")
        seen.add((owner, key))


def _key_spans(
    structure: _Structure, colons: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Where the key before each colon starts and stops (inside its quotes)."""
    quotes = structure.quotes
    ends = np.maximum(np.searchsorted(quotes, structure.at[colons]), 2)
    return quotes[ends - 2] + 1, quotes[ends - 1]


def _decoded(
    structure: _Structure, starts: npt.NDArray[np.intp], stops: npt.NDArray[np.intp]
) -> list[bytes]:
    """The keys as text (UTF-8): ``"\\u0061"`` and ``"a"`` are the same key."""
    body = structure.body
    keys = [body[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]
    escaped = _escaped(structure, starts, stops).nonzero()[0].tolist()
    if not escaped:
        return keys
    raw = [keys[index] for index in escaped]
    try:  # one decoding for all: the spans hold no unescaped quote
        texts: list[str] = json.loads(b'["' + b'","'.join(raw) + b'"]')
    except ValueError:  # a broken escape (msgspec refuses the body): key by key
        texts = [_unescaped(key) for key in raw]
    for index, text in zip(escaped, texts, strict=True):
        keys[index] = text.encode("utf-8", "surrogatepass")
    return keys


def _escaped(
    structure: _Structure, starts: npt.NDArray[np.intp], stops: npt.NDArray[np.intp]
) -> npt.NDArray[np.bool_]:
    if structure.slashes is None:
        return np.zeros(starts.size, dtype=np.bool_)
    return structure.slashes[stops - 1] > structure.slashes[starts - 1]


def _unescaped(raw: bytes) -> str:
    try:
        text: str = json.loads(b'"' + raw + b'"')
    except ValueError:
        return raw.decode("utf-8", "surrogateescape")
    return text


def _suspects(
    structure: _Structure,
    owners: npt.NDArray[np.intp],
    starts: npt.NDArray[np.intp],
    stops: npt.NDArray[np.intp],
) -> npt.NDArray[np.intp]:
    """Indices (in body order) of the keys whose object and text hash repeat."""
    hashes = _text_hashes(structure, starts, stops)
    order = np.lexsort((hashes, owners))
    repeats = (owners[order][1:] == owners[order][:-1]) & (
        hashes[order][1:] == hashes[order][:-1]
    )
    flagged = np.zeros(order.size, dtype=np.bool_)
    flagged[1:] |= repeats
    flagged[:-1] |= repeats
    return np.sort(order[flagged])


def _text_hashes(
    structure: _Structure, starts: npt.NDArray[np.intp], stops: npt.NDArray[np.intp]
) -> npt.NDArray[np.uint64]:
    """Each key's hash, of what it means rather than how it is spelled."""
    escaped = _escaped(structure, starts, stops)
    texts = (
        _decoded(structure, starts[escaped], stops[escaped]) if escaped.any() else []
    )
    lengths = np.array([len(text) for text in texts], dtype=np.intp)
    ends = np.cumsum(lengths)
    decoded = np.frombuffer(b"".join(texts), np.uint8)
    top = max(int(stops.max()), decoded.size) + 1  # one scale for both spellings
    body = np.frombuffer(structure.body, np.uint8)
    hashes = _span_hashes(body, starts, stops, top)
    if texts:
        hashes[escaped] = _span_hashes(decoded, ends - lengths, ends, top)
    return hashes


def _span_hashes(
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.intp],
    stops: npt.NDArray[np.intp],
    top: int,
) -> npt.NDArray[np.uint64]:
    """A polynomial hash (mod 2**64) of each data[start:stop], wherever it sits.

    Only a filter: equal hashes are confirmed on the bytes, so crafted
    collisions cost their sender time, never a wrong answer.
    """
    size = int(stops.max(initial=0)) + 1
    powers = np.full(max(size, top), _BASE, dtype=np.uint64)
    powers[0] = 1
    np.cumprod(powers, out=powers)  # wraps around mod 2**64, as meant
    prefix = np.zeros(size, dtype=np.uint64)
    np.cumsum(
        (data[: size - 1].astype(np.uint64) + 1) * powers[: size - 1], out=prefix[1:]
    )
    # sum of (byte + 1) * BASE**(offset - start + top - 1): the same for the
    # same bytes at any offset (start < top), with no modular inverse needed.
    return (prefix[stops] - prefix[starts]) * powers[top - 1 - starts]


def _path(structure: _Structure, container: int) -> str:
    """``columns[2]``: where a container sits, from the top ("body")."""
    parts: list[str] = []
    token = int(structure.opener[container])
    while token > 0:
        before = token - 1
        parent = int(structure.owner[before])
        if structure.char[before] == _COLON:
            start, stop = _key_spans(structure, np.array([before], dtype=np.intp))
            key = _decoded(structure, start, stop)[0]
            parts.append("." + _shown(key))
        else:
            inside = structure.owner[:token] == parent
            index = np.count_nonzero(inside & (structure.char[:token] == _COMMA))
            parts.append(f"[{index}]")
        if not 0 <= structure.opener[parent] < token:
            break  # mismatched brackets (malformed): no path to name
        token = int(structure.opener[parent])
    return "".join(reversed(parts)).removeprefix(".") or "body"


def _shown(key: bytes) -> str:
    text = key.decode("utf-8", "replace")
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
