"""One paging convention for every list.

A list takes ``?after=<cursor>`` (opaque: pass the previous page's ``next``
unchanged) and ``?limit=<n>`` up to a documented ceiling. The body carries
``next`` (null on the last page) and the response an RFC 8288 header
``Link: <same path and query, after=next>; rel="next"``. The log's cursor is
a position, so ``after=<position>`` keeps working there.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from litestar.params import QueryParameter

from api.problems import Problem

if TYPE_CHECKING:
    from litestar import Request

CURSOR_MAX = 512
"""The longest cursor any list hands out (a query string stays small)."""

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
