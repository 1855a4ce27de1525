"""The console's session: a JWT in a cookie, CSRF on every form, scope checks.

The console signs in with the same tokens as the API (api.auth verifies them)
and keeps the token in an HttpOnly, SameSite=Strict cookie (Secure over TLS),
scoped to /console so the JSON API never reads it: a page's cookie is no
bearer token. Every POST under /console carries a CSRF token: an HMAC of the
session cookie under the JWT secret (or, on the sign-in form, of a random
pre-session cookie), sent as the form field ``csrf_token`` or the
``X-CSRF-Token`` header (htmx requests). The check runs as the console
router's before_request, so no state-changing console route can forget it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
)
from litestar.response import Redirect, Template

from api.auth import CachedToken, Principal, rest_principal_from_token
from api.middleware.shaping import draw
from api.problems import Problem
from domain.errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    ValidationError,
)

if TYPE_CHECKING:
    from api.wiring.core import Core

SESSION_COOKIE = "conductor_console"
PRESESSION_COOKIE = "conductor_console_pre"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
COOKIE_PATH = "/console"
SIGN_IN = "/console/sign-in"
HOME = "/console/datasets"

_log = structlog.get_logger("conductor.console")


class SignInRequiredError(NotAuthorizedException):
    """No valid session: the console answers with the sign-in page (a 401 to
    the logs, like the API's, never a 500)."""


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in principal, as the console's handlers and templates see it."""

    principal: Principal
    """Exactly what the API's middleware makes of the same token."""
    claims: Mapping[str, Any] = field(default_factory=dict)
    csrf: str = ""
    """The CSRF token to put in this user's forms (the ``csrf_token`` field)."""

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def sub(self) -> str:
        return self.principal.sub

    @property
    def scopes(self) -> frozenset[str]:
        return self.principal.scopes

    def can(self, scope: str) -> bool:
        """Whether the token holds ``scope`` (templates hide what it does not)."""
        return scope in self.principal.scopes

    def can_any(self, *scopes: str) -> bool:
        return any(s in self.principal.scopes for s in scopes)


def require_scope(user: ConsoleUser, *scopes: str) -> None:
    """403 like the API's guard unless the token holds one of ``scopes``."""
    if not user.can_any(*scopes):
        needs = " or ".join(f"'{s}'" for s in scopes)
        raise PermissionDeniedException(detail=f"this needs the {needs} scope")


def jwt_secret(request: Request[Any, Any, Any]) -> str:
    """The API's JWT secret (read once per app: it may live in var/)."""
    state = request.app.state
    secret = state.get("console_jwt_secret")
    if secret is None:
        core: Core = state.conductor.core
        secret = core.settings.resolved_jwt_secret()
        state.console_jwt_secret = secret
    return str(secret)


def csrf_for(secret: str, purpose: str, value: str) -> str:
    """The CSRF token bound to one session (or pre-session) cookie value."""
    mac = hmac.new(
        secret.encode(), f"console-csrf\0{purpose}\0{value}".encode(), hashlib.sha256
    )
    return mac.hexdigest()


async def verify_token(
    request: Request[Any, Any, Any], encoded: str
) -> tuple[Principal, dict[str, Any]]:
    """The principal of a token, exactly as the API's middleware would see it."""
    token = CachedToken.decode(
        encoded, jwt_secret(request), "HS256", require_claims=["exp", "sub"]
    )
    # the console, like REST, does not enforce ABAC attribute claims: refused
    principal = await rest_principal_from_token(token, request)
    claims = {"sub": token.sub, "exp": token.exp.isoformat(), **token.extras}
    return principal, claims


async def console_user(request: Request[Any, Any, Any]) -> ConsoleUser:
    """Dependency ``user``: the signed-in principal, or off to the sign-in page."""
    encoded = request.cookies.get(SESSION_COOKIE)
    if not encoded:
        raise SignInRequiredError
    try:
        principal, claims = await verify_token(request, encoded)
    except NotAuthorizedException:
        raise SignInRequiredError from None
    request.scope["user"] = principal  # for the request log line and metering
    # shaped like the API: a throttled tenant's pages are refused too (429)
    await draw(request.app.state.conductor.autopilot.shaping, principal.tenant, request)
    return ConsoleUser(
        principal=principal,
        claims=claims,
        csrf=csrf_for(jwt_secret(request), "session", encoded),
    )


async def check_csrf(request: Request[Any, Any, Any]) -> None:
    """before_request of the console: a POST without the right token is a 403."""
    if request.method in {"GET", "HEAD", "OPTIONS"}:
        return
    session = request.cookies.get(SESSION_COOKIE)
    pre = request.cookies.get(PRESESSION_COOKIE)
    secret = jwt_secret(request)
    expected = {
        csrf_for(secret, "session", session) if session else None,
        csrf_for(secret, "sign-in", pre) if pre else None,
    } - {None}
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content = request.headers.get("content-type", "")
        if content.startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            raw = form.get(CSRF_FIELD)
            sent = raw if isinstance(raw, str) else None
    if not sent or not any(hmac.compare_digest(sent, e) for e in expected if e):
        _log.warning("console_csrf_refused", route=request.url.path)
        raise Problem(
            403,
            "the form's CSRF token is missing or does not match your session",
            kind="csrf",
            title="CSRF check failed",
            errors=[
                {
                    "field": CSRF_FIELD,
                    "rule": "csrf",
                    "message": "reload the page and submit the form again",
                }
            ],
        )


def new_presession() -> str:
    return secrets.token_urlsafe(32)


def set_session(
    request: Request[Any, Any, Any], response: Response[Any], token: str
) -> None:
    """Put the token in the session cookie and drop the pre-session one."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(PRESESSION_COOKIE, path=COOKIE_PATH)


def clear_session(response: Response[Any]) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


def set_presession(
    request: Request[Any, Any, Any], response: Response[Any], value: str
) -> None:
    response.set_cookie(
        PRESESSION_COOKIE,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def to_sign_in(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    """The answer to a request without a valid session (htmx: a full redirect)."""
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    location = f"{SIGN_IN}?next={quote(target, safe='')}"
    if request.headers.get("hx-request"):
        return Response(b"", status_code=204, headers={"HX-Redirect": location})
    return Redirect(location, status_code=303)


def _status(error: Exception) -> tuple[int, str]:
    if isinstance(error, HTTPException):
        return error.status_code, str(error.detail)
    if isinstance(error, NotFoundError):
        return 404, str(error)
    if isinstance(error, ValidationError):
        return 422, str(error)
    if isinstance(error, ConflictError | DomainError):
        return 409, str(error)
    return 500, ""


def error_page(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    """Errors on console pages as an HTML page with the API's status code."""
    status, detail = _status(error)
    if status >= 500:
        _log.error("console_failed", route=request.url.path, exc_info=error)
        detail = "an internal error occurred; see the server log"
    return Template(
        "error.html",
        context={"status": status, "detail": detail, "user": None},
        status_code=status,
        # e.g. a throttled tenant's Retry-After and x-ig-throttle
        headers=dict(error.headers or {}) if isinstance(error, HTTPException) else None,
    )


def safe_next(raw: str | None) -> str:
    """Only a console path may follow sign-in (no open redirect)."""
    if raw and raw.startswith("/console/") and not raw.startswith("//"):
        return raw
    return HOME
