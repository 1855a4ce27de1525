"""Health, readiness and Prometheus metrics (no auth)."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.wiring.core import Core


@get("/healthz", operation_id="Health", tags=["ops"], sync_to_thread=False)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz", operation_id="Ready", tags=["ops"], sync_to_thread=True)
def readyz(core: NamedDependency[Core]) -> Response[dict[str, Any]]:
    """The database answers and every projection runs without errors."""
    checks: dict[str, Any] = {}
    ready = True
    try:
        head = core.ledger.head()
        checks["log"] = {"position": head.position}
    except Exception as error:
        ready = False
        checks["log"] = {"error": type(error).__name__}
    local = core.settings.projections
    for name, runner in core.runners.items():
        status = runner.status()
        # Where projections run in another process, this one cannot see that
        # process's thread; the view's position (and lag) is what it reports.
        ok = (status.running and not status.error) if local else True
        ready = ready and ok
        checks[name] = {
            "position": status.position,
            "lag": status.lag,
            "running": status.running,
            "error": status.error or None,
        }
    try:  # who engaged them and why: GET /v1/switches (a token's business)
        checks["switches"] = {s.name: s.engaged for s in core.switches.states()}
    except Exception as error:
        ready = False
        checks["switches"] = {"error": type(error).__name__}
    return Response(
        {"status": "ready" if ready else "not-ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@get(
    "/metrics",
    operation_id="Metrics",
    tags=["ops"],
    sync_to_thread=False,
    include_in_schema=False,
)
def metrics(core: NamedDependency[Core]) -> Response[bytes]:
    """Prometheus exposition."""
    return Response(
        generate_latest(core.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
