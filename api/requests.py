"""Request plumbing shared by controllers: headers, preconditions, read-your-writes."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import msgspec
from litestar import Request, Response

from api.auth import Principal
from api.middleware.body_limits import check_body
from api.problems import Problem
from api.schemas.base import CommandAccepted
from application.base import IdempotencyKey

if TYPE_CHECKING:
    from api.wiring.catalog import CatalogBundle
    from application.base import CommandResult
    from projections.runner import BatchRunner

# Numbers in headers are ASCII digits only, and bounded: str.isdigit() and
# \d also take "²" (which int() then refuses: a 500) or "٣" (which int() reads).
_ETAG = re.compile(r'[ \t]*(?:W/)?"?([0-9]{1,18})"?[ \t]*')
_POSITION = re.compile(r"[0-9]{1,18}")
_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_THREAD_FROM = 64 << 10
"""Bodies from this size are checked on a worker thread, off the event loop."""


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_position(raw: str) -> bool:
    """Whether a header holds a log position: 1-18 ASCII digits."""
    return _POSITION.fullmatch(raw) is not None


async def require_json(request: Request[Any, Any, Any]) -> None:
    """before_request: a body must be declared JSON (415) and within the edge
    limits of api.middleware.body_limits (400), before any route decodes it.

    A before_request hook rather than an ASGI middleware: it runs after
    routing, authentication and guards (so strangers' bodies are never read),
    and reads the body through litestar, which enforces the size limit (413)
    and caches the bytes for the handler's own decoding: one read, no replay.
    """
    if request.method not in _BODY_METHODS:
        return
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise Problem(
            415,
            f"send the body as application/json, not {media or 'untyped'}",
            errors=[
                {
                    "field": "Content-Type",
                    "rule": "json",
                    "message": "must be application/json",
                }
            ],
        )
    body = await request.body()
    if len(body) < _THREAD_FROM:
        check_body(body)
    else:
        await anyio.to_thread.run_sync(check_body, body)


def principal(request: Request[Any, Any, Any]) -> Principal:
    user = request.user
    if not isinstance(user, Principal):  # pragma: no cover - guarded routes only
        raise Problem(401, "no principal on this request")
    return user


def expected_version(request: Request[Any, Any, Any], *, required: bool) -> int | None:
    """The version from If-Match: missing -> 428 (if required), garbage -> 400."""
    raw = request.headers.get("if-match")
    if raw is None:
        if required:
            raise Problem(
                428,
                'send If-Match: "<version>" (the ETag from GET) to change this dataset',
                errors=[
                    {
                        "field": "If-Match",
                        "rule": "required",
                        "message": "conditional request required",
                    }
                ],
            )
        return None
    match = _ETAG.fullmatch(raw)
    if match is None:
        raise Problem(
            400,
            'If-Match must be a version ETag such as "3"',
            errors=[
                {"field": "If-Match", "rule": "etag", "message": "not a version ETag"}
            ],
        )
    return int(match.group(1))


def idempotency(request: Request[Any, Any, Any], body: Any) -> IdempotencyKey | None:
    """The Idempotency-Key header and the fingerprint of this exact request."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise Problem(
            400,
            "Idempotency-Key must be 1-255 printable ASCII characters",
            errors=[
                {
                    "field": "Idempotency-Key",
                    "rule": "pattern",
                    "message": "1-255 printable ASCII characters",
                }
            ],
        )
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.url.path}\n".encode())
    digest.update(msgspec.json.encode(body))
    return IdempotencyKey(key, digest.hexdigest())


def command_response(
    catalog: CatalogBundle, result: CommandResult, *, status: int = 200
) -> Response[CommandAccepted]:
    """The reply to a command: ids, version, position, ETag; replays say so."""
    position = result.position
    if position is None:
        position = catalog.registry.last_position(result.id)
    headers = {"ETag": f'"{result.version}"'}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    if result.created:
        status = 201
        headers["Location"] = f"/v1/datasets/{result.id}"
    return Response(
        CommandAccepted(id=result.id, version=result.version, position=position),
        status_code=status,
        headers=headers,
    )


def read_model(
    request: Request[Any, Any, Any], runner: BatchRunner, wait_s: float
) -> dict[str, str]:
    """Honour x-ig-min-position, then report the view's position and lag."""
    raw = request.headers.get("x-ig-min-position")
    if raw is not None:
        if not is_position(raw):
            raise Problem(
                400,
                "x-ig-min-position must be a non-negative integer log position",
                errors=[
                    {
                        "field": "x-ig-min-position",
                        "rule": "integer",
                        "message": "not a log position",
                    }
                ],
            )
        wanted = int(raw)
        if not runner.wait(wanted, wait_s):
            status = runner.status()
            raise Problem(
                503,
                f"the {runner.name} view is at position {status.position}, "
                f"behind the requested {wanted}",
                kind="projection-lagging",
                title="The read model has not caught up yet",
                headers={"Retry-After": "1"},
                position=status.position,
                minPosition=wanted,
            )
    status = runner.status()
    return {"x-ig-position": str(status.position), "x-ig-lag-events": str(status.lag)}
