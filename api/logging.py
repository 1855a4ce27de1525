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


_HANDLER = "conductor-structlog"
"""The name of the root handler configure_logging installs (once per process)."""


def _stdlib_through_structlog(tail: list[Any], level: int) -> None:
    """Route the standard library's loggers (uvicorn, apscheduler, httpx,
    warnings) through the same chain: one root handler with structlog's
    ProcessorFormatter, replacing any earlier one of ours."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.ExtraAdder(),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own handlers (if it configured any) would print plain text
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.captureWarnings(capture=True)  # warnings.warn lines become JSON too


def configure_logging(settings: Settings) -> None:
    """The house processor chain; JSON unless console output was asked for.

    structlog's own loggers print straight to stderr; the standard library's
    (uvicorn, apscheduler, ...) reach the same renderer through the root
    handler, so every line on stderr is one JSON object.
    """
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
    # (at debug, its INFO lines too: "Running job ...", as JSON like the rest)
    logging.getLogger("apscheduler").setLevel(
        logging.INFO if level <= logging.DEBUG else logging.WARNING
    )
    # httpx narrates every request (the webhook sink's, the tests' clients)
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    _stdlib_through_structlog(tail, level)
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
