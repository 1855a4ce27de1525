"""The Litestar app over the wired capabilities (api.bootstrap builds them)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog
from litestar import Litestar
from litestar.exceptions import InternalServerException
from litestar.openapi import OpenAPIConfig
from litestar.plugins.problem_details import ProblemDetailsException

from adapters.dr.router import RegionError
from api.auth import jwt_auth
from api.bootstrap import Conductor, build_conductor
from api.console import console_handlers, console_template_config, swagger_plugin
from api.controllers.budget import BudgetController
from api.controllers.catalog import CatalogController
from api.controllers.datasets import DatasetController
from api.controllers.dr import DrController
from api.controllers.er import ErController
from api.controllers.er_jobs import ErJobController
from api.controllers.exports import ExportController, ProofController
from api.controllers.incidents import IncidentController
from api.controllers.ledger import LedgerController, public_keys
from api.controllers.log import LogController
from api.controllers.ops import healthz, metrics, readyz
from api.controllers.policies import PolicyController
from api.controllers.switches import SwitchController
from api.graphql.schema import graphql_handlers
from api.logging import configure_logging, request_logging
from api.middleware.shaping import add_throttle_header, shaping_hook
from api.problem_docs import document_problems
from api.problems import problem_plugin, region_problem
from api.requests import require_json
from api.settings import Settings, get_settings
from application.ports import PolicyBusyError
from domain.errors import DomainError

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.types import Scope


_log = structlog.get_logger("conductor.http")


async def log_unexpected(error: Exception, scope: Scope) -> None:
    """Log errors that become 5xx with their traceback (4xx are the client's)."""
    status = getattr(error, "status_code", 500)
    if status < 500 or isinstance(error, DomainError):
        return
    route = scope.get("path_template")
    if _client_went_away(error):  # nobody to answer: not a server fault
        _log.info("client_disconnected", route=route)
        return
    refused = region_problem(error) if isinstance(error, RegionError) else error
    if isinstance(error, PolicyBusyError):
        _log.warning("request_refused", route=route, status=503, type="policy-busy")
        return
    if isinstance(refused, ProblemDetailsException):  # deliberate: lag, read-only
        _log.warning(
            "request_refused",
            route=route,
            status=refused.status_code,
            type=refused.type_,
        )
        return
    _log.error("request_failed", route=route, exc_info=error)


def _client_went_away(error: Exception) -> bool:
    """Litestar's way of saying the client hung up while sending the body."""
    return isinstance(error, InternalServerException) and (
        error.detail == "client disconnected prematurely"
    )


def _handler_threads(count: int) -> Callable[[], None]:
    """on_startup: litestar runs sync handlers on the loop's default executor."""

    def start() -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=count, thread_name_prefix="handler")
        )

    return start


def create_app_from_env() -> Litestar:
    """The app from CONDUCTOR_* variables (uvicorn's factory for --workers)."""
    return create_app(Settings.from_env())


def create_app(
    settings: Settings | None = None, *, conductor: Conductor | None = None
) -> Litestar:
    """Build the API over freshly wired (or given) capabilities."""
    settings = settings or get_settings()
    configure_logging(settings)
    wired = conductor or build_conductor(settings)
    auth = jwt_auth(settings.resolved_jwt_secret())
    app = Litestar(
        route_handlers=[
            DatasetController,
            PolicyController,
            ExportController,
            ProofController,
            LedgerController,
            public_keys,
            CatalogController,
            ErController,
            ErJobController,
            DrController,
            BudgetController,
            IncidentController,
            LogController,
            SwitchController,
            healthz,
            readyz,
            metrics,
            *console_handlers,
            *graphql_handlers(settings),
        ],
        template_config=console_template_config,
        dependencies=wired.providers(),
        on_app_init=[auth.on_app_init],
        plugins=[problem_plugin()],
        request_max_body_size=settings.max_body_bytes,
        after_exception=[log_unexpected],
        # litestar's default would re-configure the root logger in plain text;
        # api.logging routes every standard logger through structlog instead
        logging_config=None,
        before_request=shaping_hook(lambda: wired.autopilot.shaping, then=require_json),
        before_send=[add_throttle_header],
        on_startup=[_handler_threads(settings.threads), wired.start],
        on_shutdown=[wired.close],
        openapi_config=OpenAPIConfig(
            title="Conductor",
            version="0.1.0",
            description="Event-sourced governance control plane",
            path="/schema",
            render_plugins=[swagger_plugin()],  # vendored assets, no CDN
            security=[{"BearerToken": []}],
            components=[auth.openapi_components],
        ),
        debug=False,
    )
    app.state.conductor = wired  # for the CLI's in-process tools and the tests
    document_problems(app)  # OpenAPI: the problem+json each route really sends
    # Outermost, so that 401s from the auth middleware and unmatched routes
    # get their log line and latency sample too.
    app.asgi_handler = request_logging(wired.core.metrics, wired.autopilot.meter)(
        app.asgi_handler
    )
    return app
