"""structlog: JSON lines (ids and hashes only), one canonical line per request."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec
import structlog
from litestar.enums import ScopeType

from application.autopilot.metering import route_class

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from api.metrics import Metrics
    from api.settings import Settings
    from application.autopilot.metering import Meter

_REQUEST_ID_OK = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)


def _json(event: Any, **_: Any) -> str:
    return msgspec.json.encode(event, enc_hook=str).decode()


def configure_logging(settings: Settings) -> None:
    """The house processor chain; JSON unless console output was asked for."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    # Tracebacks never show locals: locals would carry request bodies.
    tail: list[Any] = (
        [
            structlog.dev.ConsoleRenderer(
                exception_formatter=structlog.dev.plain_traceback
            )
        ]
        if settings.log_format == "console"
        else [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(serializer=_json),
        ]
    )
    # apscheduler narrates every job at INFO through the standard library;
    # our own lines are the structured ones.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def request_logging(metrics: Metrics, meter: Meter | None = None) -> Any:
    """ASGI middleware: request id, one log line, one latency sample and (for
    an authenticated tenant) one metered request per request."""

    def middleware(app: ASGIApp) -> ASGIApp:
        log = structlog.get_logger("conductor.http")

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            method = str(scope.get("method", ""))
            started = time.perf_counter()
            headers = dict(scope.get("headers", []))
            incoming = headers.get(b"x-request-id", b"").decode("latin-1")
            request_id = (
                incoming
                if 0 < len(incoming) <= 64 and set(incoming) <= _REQUEST_ID_OK
                else uuid.uuid4().hex
            )
            status = 500

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ]
                await send(message)

            structlog.contextvars.bind_contextvars(request_id=request_id)
            try:
                await app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("path_template") or "unmatched"
                user = scope.get("user")
                metrics.observe_request(method, route, status, elapsed)
                tenant = getattr(user, "tenant", None)
                if meter is not None and isinstance(tenant, str):
                    meter.request(
                        tenant,
                        route_class(method, route),
                        method=method,
                        status=status,
                        latency_ms=elapsed * 1000,
                        now_ms=int(time.time() * 1000),
                    )
                if status == 429 and isinstance(tenant, str):
                    metrics.throttled.labels(tenant).inc()
                log.info(
                    "request_handled",
                    method=method,
                    route=route,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    tenant=tenant,
                    sub=getattr(user, "sub", None),
                )
                structlog.contextvars.unbind_contextvars("request_id")

        return handle

    return middleware
