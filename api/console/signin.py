"""GET/POST /console/sign-in, POST /console/sign-out, and /console itself."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from litestar import Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.params import Body, QueryParameter
from litestar.response import Redirect, Template

from api.console.session import (
    HOME,
    SIGN_IN,
    clear_session,
    csrf_for,
    jwt_secret,
    new_presession,
    safe_next,
    set_presession,
    set_session,
    verify_token,
)

_log = structlog.get_logger("conductor.console")
_MAX_TOKEN = 8192


def _form(
    request: Request[Any, Any, Any],
    *,
    next_path: str,
    error: str | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Template:
    pre = new_presession()
    page = Template(
        "sign_in.html",
        context={
            "user": None,
            "csrf": csrf_for(jwt_secret(request), "sign-in", pre),
            "next": next_path,
            "error": error,
            "flashes": [("ok", notice)] if notice else [],
        },
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )
    set_presession(request, page, pre)
    return page


@get("/sign-in", sync_to_thread=False)
def sign_in_page(
    request: Request[Any, Any, Any],
    next: Annotated[str | None, QueryParameter()] = None,  # noqa: A002 - its name
    signed_out: Annotated[bool, QueryParameter()] = False,
) -> Template:
    """The sign-in form (a token field; the link's #token= fills it in)."""
    return _form(
        request,
        next_path=safe_next(next),
        notice="You are signed out." if signed_out else None,
    )


@post("/sign-in", status_code=303)
async def sign_in(
    request: Request[Any, Any, Any],
    data: Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    """Verify the token like the API does; on success it becomes the session."""
    token = (data.get("token") or "").strip()
    next_path = safe_next(data.get("next"))
    if not token or len(token) > _MAX_TOKEN:
        return _form(request, next_path=next_path, error="Paste a token.", status=400)
    try:
        principal, _ = await verify_token(request, token)
    except (NotAuthorizedException, PermissionDeniedException) as error:
        _log.info("console_sign_in_refused", reason=str(error.detail))
        return _form(
            request,
            next_path=next_path,
            error=f"That token was refused: {error.detail}.",
            status=error.status_code,
        )
    _log.info("console_signed_in", tenant=principal.tenant, sub=principal.sub)
    response: Response[Any] = Redirect(next_path, status_code=303)
    set_session(request, response, token)
    return response


@post("/sign-out", status_code=303, sync_to_thread=False)
def sign_out() -> Response[Any]:
    """Clear the session cookie (the form carries the CSRF token)."""
    response: Response[Any] = Redirect(f"{SIGN_IN}?signed_out=true", status_code=303)
    clear_session(response)
    return response


@get(["/", ""], sync_to_thread=False)
def console_home() -> Redirect:
    return Redirect(HOME, status_code=303)
