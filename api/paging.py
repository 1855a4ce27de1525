"""One paging convention for every list.

A list takes ``?after=<cursor>`` (opaque: pass the previous page's ``next``
unchanged) and ``?limit=<n>`` up to a documented ceiling. The body carries
``next`` (null on the last page) and the response an RFC 8288 header
``Link: <same path and query, after=next>; rel="next"``. The log's cursor is
a position, so ``after=<position>`` keeps working there.

The catalog search's and the exports listing's cursors live here, shared by
REST (api.controllers), GraphQL (api.graphql) and the console.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode
from uuid import UUID

from litestar.params import QueryParameter

from api.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Iterable

    from litestar import Request

    from projections.catalog import CatalogQuery
    from projections.exports import ExportRow

CURSOR_MAX = 512
"""The longest cursor any list hands out (a query string stays small)."""
SEARCH_LIMIT = 200
"""The catalog search's page-size ceiling (REST ``limit``, GraphQL ``first``)."""

After = Annotated[
    str | None,
    QueryParameter(
        max_length=CURSOR_MAX,
        description="the `next` of the previous page, unchanged",
    ),
]


def ceiling(default: int, most: int) -> str:
    """How a list documents its ``limit`` (default and ceiling)."""
    return f"page size: {default} unless given, at most {most}"


def next_link(request: Request[Any, Any, Any], cursor: str | None) -> dict[str, str]:
    """The ``Link: <…>; rel="next"`` header for a page (none on the last one)."""
    if cursor is None:
        return {}
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
    query.append(("after", cursor))
    return {"Link": f'<{request.url.path}?{urlencode(query)}>; rel="next"'}


def encode_key(raw: str) -> str:
    """An opaque cursor for a plain key (URL-safe, no padding)."""
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_key(cursor: str, *, listing: str) -> str:
    """The key inside ``cursor``, or a 400 that names the field and the rule."""
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_cursor(listing) from None


def bad_cursor(listing: str) -> Problem:
    """400 naming the field and the rule: a cursor this list did not hand out."""
    return Problem(
        400,
        f"the 'after' cursor is not one this {listing} returned",
        errors=[
            {
                "field": "after",
                "rule": "cursor",
                "message": "pass the 'next' value of the previous page unchanged",
            }
        ],
    )


# -- the catalog search: a keyset cursor bound to the query it came from ------


def _query_hash(query: CatalogQuery) -> str:
    parts: list[str | None] = [query.q, query.license, query.purpose, query.region]
    parts += [query.tag, query.status]
    if query.contract_status is not None or query.sort != "relevance":
        parts += [query.contract_status, query.sort]  # older cursors stay valid
    key = json.dumps(parts)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def encode_cursor(query: CatalogQuery, after: tuple[Any, int]) -> str:
    """The cursor continuing ``query`` right after the keyset position ``after``."""
    [cursor] = encode_cursors(query, [after])
    return cursor


def encode_cursors(query: CatalogQuery, afters: Iterable[tuple[Any, int]]) -> list[str]:
    """``encode_cursor`` for many positions of one query (hashed once)."""
    digest = _query_hash(query)
    return [
        base64.urlsafe_b64encode(json.dumps({"k": key, "r": rid, "q": digest}).encode())
        .decode()
        .rstrip("=")
        for key, rid in afters
    ]


def decode_cursor(query: CatalogQuery, cursor: str) -> tuple[Any, int]:
    """The keyset position in ``cursor``, or a 400 if ``query`` did not hand it out."""
    bad = bad_cursor("search")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        key, rid, digest = data["k"], data["r"], data["q"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise bad from None
    if digest != _query_hash(query) or not _valid_position(rid):
        raise bad
    # text search sorts by score (unless sort=name), else by name
    ranked = bool(query.q.strip()) and query.sort == "relevance"
    if ranked and not _valid_score(key):
        raise bad
    if not ranked and not (
        isinstance(key, str) and len(key) <= 512 and "\x00" not in key
    ):
        raise bad
    return key, rid


def _valid_position(value: object) -> bool:
    return type(value) is int and 0 < value < 2**63


def _valid_score(value: object) -> bool:
    return type(value) in {int, float} and math.isfinite(value)  # type: ignore[arg-type]


# -- the exports listing: newest first, by (created at, id) -------------------


def export_cursor(row: ExportRow) -> str:
    """The cursor continuing the exports listing right after ``row``."""
    raw = json.dumps([row.created_at.isoformat(), str(row.id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def export_after(cursor: str) -> tuple[str, str]:
    """The (created at, id) in an exports cursor, or a 400 naming ``after``."""
    try:
        created, export_id = json.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
        UUID(export_id)
    except (ValueError, TypeError, binascii.Error):
        raise bad_cursor("listing") from None
    return str(created), str(export_id)
