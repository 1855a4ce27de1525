"""The OpenAPI document tells the truth about errors.

litestar documents a 400 as its own ``{status_code, detail, extra}``, but
every error Conductor sends is an RFC 9457 problem (``api.problems``). Each
route's operations get the statuses that route can answer, each described
by the ``Problem`` schema as ``application/problem+json``; litestar's own
400 is replaced (a handler's ``responses`` override it).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.routes import HTTPRoute

from api.auth import PUBLIC_PATHS
from api.problems import TITLES

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.handlers import HTTPRouteHandler

PROBLEM_JSON = "application/problem+json"
_PUBLIC = [re.compile(p) for p in PUBLIC_PATHS]
_CONTEXT = frozenset({"request", "state", "scope", "socket"})
"""Handler parameters that are not input from the client."""


class FieldError(msgspec.Struct, frozen=True):
    """One broken rule: the camelCase field it names, the rule and why."""

    field: str
    rule: str
    message: str


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9457 problem details, as every error response carries them; some
    kinds add members (``currentVersion``, ``position``, ``minPosition``...)."""

    type: str
    """``/problems/<kind>``, e.g. ``/problems/validation``."""
    title: str
    """Fixed per type."""
    status: int
    detail: str
    """For humans: what went wrong with this request."""
    errors: list[FieldError] | None = None
    """For 400/422: each field and the rule it broke."""


def _guarded(path: str) -> bool:
    return not any(p.search(path) for p in _PUBLIC)


def _takes_input(handler: HTTPRouteHandler) -> bool:
    names = set(handler.parsed_fn_signature.parameters)
    return bool(names - _CONTEXT - set(handler.resolve_dependencies()))


def statuses(path: str, method: str, handler: HTTPRouteHandler) -> set[int]:
    """The error statuses one operation can answer (beyond its success)."""
    found = {500}
    takes_body = "data" in handler.parsed_fn_signature.parameters
    if _guarded(path):
        # a bad token, a missing scope, a shaped tenant; x-ig-min-position
        # (malformed: 400, not reached: 503), a DR region that cannot answer
        found |= {400, 401, 403, 429, 503}
    if "{" in path:
        found.add(404)
    if _takes_input(handler):
        found |= {400, 422}
        if _guarded(path):  # an id, digest or position named in the query
            found.add(404)
    if takes_body or method in {"POST", "PUT", "PATCH"}:
        found |= {400, 413, 415, 422}
    if method in {"POST", "PUT", "PATCH", "DELETE"} and _guarded(path):
        found.add(409)
    if method in {"PATCH", "DELETE"}:
        found |= {412, 428}
    return found


def _spec(status: int) -> ResponseSpec:
    _, title = TITLES.get(status, ("error", "Error"))
    return ResponseSpec(
        data_container=Problem,
        description=f"{title} (RFC 9457 problem)",
        media_type=PROBLEM_JSON,
        generate_examples=False,
    )


def document_problems(app: Litestar) -> None:
    """Give every route's operations their problem responses (before the
    OpenAPI document is first built, which happens on its first request)."""
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            wanted: set[int] = set()
            for method in handler.http_methods - {"HEAD", "OPTIONS"}:
                wanted |= statuses(route.path, method, handler)
            own: dict[int, Any] = dict(handler.responses or {})
            handler.responses = {
                **{status: _spec(status) for status in sorted(wanted)},
                **own,
            }
