"""Following a list's pages the way a client does: by its Link rel="next"."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.testing import TestClient

LINK = re.compile(r'^<(?P<url>/[^>]*)>; rel="next"$')
MAX_PAGES = 50
"""A cursor that never ends would loop for ever: fail past this many pages."""


def walk(
    client: TestClient[Any],
    url: str,
    headers: dict[str, str] | Callable[[], dict[str, str]],
) -> list[Any]:
    """Every page from ``url`` on; each page's ``next`` matches its Link header,
    and the last page has neither. ``headers`` may be a function (fresh
    read-your-writes headers per page)."""
    pages = []
    while True:
        sent = headers() if callable(headers) else headers
        answer = client.get(url, headers=sent)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        pages.append(body)
        link = answer.headers.get("link")
        if body["next"] is None:
            assert link is None
            return pages
        found = LINK.match(link or "")
        assert found is not None, link
        url = found["url"]
        assert f"after={body['next']}" in url.replace("%3D", "=")
        assert len(pages) < MAX_PAGES
