"""JWT bearer auth: claims (sub, tenant, scopes) become a Principal; guards check."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import jwt
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.security.jwt import JWTAuth, Token

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Self

    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

SCOPES = frozenset(
    {
        "catalog.read",
        "catalog.write",
        "export.request",
        "export.approve",
        "dr.operate",
        "budget.admin",
        "audit.read",
        "er.read",
        "er.write",
        "audit.platform",
        "platform.operate",
    }
)
OPERATOR_SCOPES = frozenset({"audit.platform", "platform.operate"})
"""Scopes over every tenant (the whole log, the backout switches): a token
gets them only when issued with ``operator=True`` (`token issue --operator`)."""
TENANT_SCOPES = SCOPES - OPERATOR_SCOPES
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,8192}")
"""A JWT segment: base64url without padding (bounded: headers are, too)."""
PUBLIC_PATHS = [
    "^/healthz$",
    "^/readyz$",
    "^/metrics$",
    "^/schema",
    "^/v1/keys$",
    "^/console(/|$)",  # its own session cookie: api.console.session
]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: subject, the one tenant they act for, their scopes."""

    sub: str
    tenant: str
    scopes: frozenset[str]
    regions: frozenset[str] | None = None
    """ABAC attribute claim: the regions whose objects it may see (None: any)."""
    purposes: frozenset[str] | None = None
    """ABAC attribute claim: the purposes it may act for (None: any)."""


async def principal_from_token(
    token: Token, _: ASGIConnection[Any, Any, Any, Any]
) -> Principal:
    """Validate the custom claims; anything malformed is a 401, never a 500."""
    tenant = token.extras.get("tenant")
    scopes = token.extras.get("scopes", [])
    if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
        raise NotAuthorizedException(detail="token has no valid 'tenant' claim")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise NotAuthorizedException(detail="token 'scopes' claim must be a list")
    return Principal(
        sub=token.sub,
        tenant=tenant,
        scopes=frozenset(scopes) & SCOPES,
        regions=_attribute(token.extras, "regions"),
        purposes=_attribute(token.extras, "purposes"),
    )


async def rest_principal_from_token(
    token: Token, connection: ASGIConnection[Any, Any, Any, Any]
) -> Principal:
    """The REST routes' principal: a token limited by attribute claims is refused.

    Only GraphQL's @auth enforces ``regions`` and ``purposes``
    (docs/graphql.md#abac); REST checks scopes and tenant. Accepting such a
    token here would quietly widen it, so it is refused instead (403).
    """
    principal = await principal_from_token(token, connection)
    limited = [
        name
        for name, value in (
            ("regions", principal.regions),
            ("purposes", principal.purposes),
        )
        if value is not None
    ]
    if limited:
        raise PermissionDeniedException(
            detail=f"this token is limited by {' and '.join(limited)} claims, "
            "which only /graphql enforces; use /graphql or a token without them"
        )
    return principal


def _attribute(claims: dict[str, Any], name: str) -> frozenset[str] | None:
    """An optional ABAC attribute claim: absent is unrestricted, else a list."""
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NotAuthorizedException(detail=f"token '{name}' claim must be a list")
    return frozenset(value)


class CachedToken(Token):
    """Token whose signature check is remembered per encoded token.

    Clients send the same bearer token with every request; verifying the HMAC
    and parsing the claims again each time is a tenth of a command's CPU. The
    expiry is still checked on every use; failures are never cached.
    """

    @classmethod
    def decode(
        cls,
        encoded_token: str,
        secret: str,
        algorithm: str,
        audience: str | Sequence[str] | None = None,
        issuer: str | Sequence[str] | None = None,
        require_claims: Sequence[str] | None = None,
        verify_exp: bool = True,
        verify_nbf: bool = True,
        strict_audience: bool = False,
    ) -> Self:
        token: Self = _verified(
            cls,  # type: ignore[arg-type]
            encoded_token,
            secret,
            algorithm,
            audience if isinstance(audience, str | None) else tuple(audience),
            issuer if isinstance(issuer, str | None) else tuple(issuer),
            tuple(require_claims or ()),
            verify_exp,
            verify_nbf,
            strict_audience,
        )
        if verify_exp and token.exp <= datetime.now(UTC):
            raise NotAuthorizedException(detail="Invalid token")
        return token


@lru_cache(maxsize=4096)
def _verified(cls: type[Token], token: str, *args: Any) -> Any:
    secret, algorithm, audience, issuer, claims, exp, nbf, strict = args
    if not is_canonical_jwt(token):
        raise NotAuthorizedException(detail="Invalid token")
    return Token.decode.__func__(  # type: ignore[attr-defined]
        cls, token, secret, algorithm, audience, issuer, list(claims), exp, nbf, strict
    )


def is_canonical_jwt(token: str) -> bool:
    """Three non-empty unpadded base64url segments, each in its one spelling.

    PyJWT 2.15 still takes a signature with ``=`` padding appended (older
    versions also took ``+``/``/`` and non-zero trailing bits), so one signed
    token had several accepted spellings, each its own cache entry. This
    check holds whatever the installed PyJWT forgives.
    """
    segments = token.split(".")
    return len(segments) == 3 and all(_canonical_segment(s) for s in segments)


def _canonical_segment(segment: str) -> bool:
    if not _SEGMENT.fullmatch(segment) or len(segment) % 4 == 1:
        return False
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == segment


def jwt_auth(secret: str) -> JWTAuth[Principal, Token]:
    """Litestar's JWT middleware, HS256, with the public paths left open."""
    return JWTAuth[Principal, Token](
        retrieve_user_handler=rest_principal_from_token,
        token_cls=CachedToken,
        token_secret=secret,
        algorithm="HS256",
        exclude=PUBLIC_PATHS,
        require_claims=["exp", "sub"],
    )


def issue_token(
    secret: str,
    *,
    tenant: str,
    scopes: Iterable[str],
    sub: str = "cli",
    ttl: timedelta = timedelta(hours=1),
    operator: bool = False,
    regions: Iterable[str] | None = None,
    purposes: Iterable[str] | None = None,
) -> str:
    """A signed token for ``tenant`` with ``scopes`` (unknown scopes refused).

    Operator scopes reach across tenants, so asking for one is refused
    unless ``operator`` says so explicitly. ``regions`` and ``purposes`` are
    ABAC attribute claims limiting what the token may see and ask for
    (docs/graphql.md#abac); left out, the token is not limited by them.
    """
    wanted = list(dict.fromkeys(scopes))
    unknown = sorted(set(wanted) - SCOPES)
    if unknown:
        msg = (
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}"
        )
        raise ValueError(msg)
    reaching = sorted(set(wanted) & OPERATOR_SCOPES)
    if reaching and not operator:
        msg = f"{', '.join(reaching)} reach(es) every tenant: issue it with --operator"
        raise ValueError(msg)
    if not _TENANT.fullmatch(tenant):
        msg = "tenant must be 1-64 letters, digits, '_' or '-'"
        raise ValueError(msg)
    now = datetime.now(UTC)
    claims = {
        "sub": sub,
        "tenant": tenant,
        "scopes": wanted,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    for name, values in (("regions", regions), ("purposes", purposes)):
        if values is not None:
            claims[name] = list(dict.fromkeys(values))
    return jwt.encode(claims, secret, algorithm="HS256")


def requires(
    *scopes: str,
) -> Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]:
    """A guard that lets through principals holding at least one of ``scopes``."""
    unknown = sorted(set(scopes) - SCOPES)
    if unknown or not scopes:
        msg = f"unknown scope(s) {unknown}"
        raise ValueError(msg)
    wanted = frozenset(scopes)
    needs = (
        f"the '{scopes[0]}' scope"
        if len(scopes) == 1
        else "one of the scopes " + ", ".join(f"'{s}'" for s in scopes)
    )

    def guard(
        connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
    ) -> None:
        principal = connection.user
        if not isinstance(principal, Principal) or not principal.scopes & wanted:
            raise PermissionDeniedException(detail=f"this needs {needs}")

    return guard
