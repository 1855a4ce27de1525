"""/console/dr: each region's role, epoch, lag over time, stale-read rates,
read-only state, and the last drill's RTO/RPO with its signed evidence.

The current figures are the DR state read model's (what GET /v1/dr/state
answers, through the same ``_region_out``). That model keeps each region's
newest sample only, so the lag history is read from the LagSampled events it
folds: the region's hourly LagSamples aggregates in the log, through the
application that writes them. The last drill is the newest evidence file the
drill wrote, checked with the function `conductor verify` runs.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import File, Template

from adapters.dr.evidence import is_evidence, verify_evidence
from api.console.session import ConsoleUser, require_scope
from api.controllers.dr import _region_out  # the API's own figures
from api.problems import Problem
from api.wiring.core import Core
from api.wiring.dr import DrBundle
from application.dr.lag_samples import LagSampleLog
from domain.dr.lag_samples import LagSamples

if TYPE_CHECKING:
    from pathlib import Path

    from projections.dr_state import RegionState

HISTORY_HOURS = 6
"""How far back the lag chart goes (a region records ~120 samples an hour)."""


def _samples(request: Request[Any, Any, Any], core: Core) -> LagSampleLog:
    """The application over the log's LagSamples (one per app, made on first use)."""
    state = request.app.state
    found: LagSampleLog | None = state.get("console_lag_samples")
    if found is None:
        found = LagSampleLog(core.ledger)
        state.console_lag_samples = found
    return found


def lag_history(
    log: LagSampleLog, regions: list[str], now_ms: int
) -> dict[str, list[list[float | None]]]:
    """Region -> [[seconds since the epoch, lag ms or None], ...], oldest first."""
    hour = LagSamples.hour_of(now_ms)
    series: dict[str, list[list[float | None]]] = {}
    for region in regions:
        points: list[list[float | None]] = []
        for h in range(hour - HISTORY_HOURS + 1, hour + 1):
            for event in log.events.get(LagSamples.create_id(region, h)):
                if isinstance(event, LagSamples.LagSampled):
                    lag = None if event.lag_ms is None else float(event.lag_ms)
                    points.append([event.timestamp.timestamp(), lag])
        series[region] = points
    return series


def last_drill(core: Core) -> dict[str, Any] | None:
    """The newest drill evidence in var/dr-evidence, and its verdict."""
    folder = core.settings.var_path / "dr-evidence"
    files = sorted(folder.glob("dr-evidence-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return None
    path = files[-1]
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return {"name": path.name, "failures": [f"cannot read: {error}"], "doc": {}}
    if not is_evidence(document):
        return {"name": path.name, "failures": ["not DR evidence"], "doc": {}}
    failures = verify_evidence(document, core.keys.public_keys())
    return {"name": path.name, "failures": failures, "doc": document}


def dr_figures(
    request: Request[Any, Any, Any], core: Core, dr: DrBundle
) -> dict[str, Any]:
    """What the page and its refresh show (also its JSON for the chart)."""
    rows: list[RegionState] = dr.state.regions()
    names = [r.region for r in rows]
    now_ms = max([int(time.time() * 1000), *(r.sampled_at_ms for r in rows)])
    return {
        "configured": dr.runtime is not None,
        "backend": "SQLite" if core.ledger.backend == "sqlite" else "PostgreSQL",
        "region": core.settings.dr_region if dr.runtime is not None else None,
        "position": core.runners["dr-state"].status().position,
        "regions": [_json(_region_out(r)) for r in rows],
        "lag": lag_history(_samples(request, core), names, now_ms),
    }


def _json(region: Any) -> dict[str, Any]:
    return {
        "region": region.region,
        "role": region.role,
        "epoch": region.epoch,
        "lagMs": region.lag_ms,
        "lagBytes": region.lag_bytes,
        "readOnly": region.read_only,
        "sampledAt": region.sampled_at,
        "cause": region.cause,
        "samples": region.samples,
        "staleReadRate": region.stale_read_rate,
    }


class DrPages(Controller):
    """The DR dashboard, its JSON refresh and the evidence download."""

    path = "/dr"

    @get("/", name="console-dr", sync_to_thread=True)
    def dashboard(
        self,
        request: Request[Any, Any, Any],
        user: ConsoleUser,
        core: NamedDependency[Core],
        dr: NamedDependency[DrBundle],
    ) -> Template:
        """The regions, the lag chart, the last drill (dr.operate, like the API)."""
        require_scope(user, "dr.operate")
        figures = dr_figures(request, core, dr)
        return Template(
            "dr/index.html",
            context={"user": user, "f": figures, "drill": last_drill(core)},
            headers={"Cache-Control": "no-store"},
        )

    @get("/data", name="console-dr-data", sync_to_thread=True)
    def data(
        self,
        request: Request[Any, Any, Any],
        user: ConsoleUser,
        core: NamedDependency[Core],
        dr: NamedDependency[DrBundle],
    ) -> dict[str, Any]:
        """The page's figures as JSON: the chart refreshes from it, no reload."""
        require_scope(user, "dr.operate")
        return dr_figures(request, core, dr)

    @get("/regions", name="console-dr-regions", sync_to_thread=True)
    def regions(
        self,
        request: Request[Any, Any, Any],
        user: ConsoleUser,
        core: NamedDependency[Core],
        dr: NamedDependency[DrBundle],
    ) -> Template:
        """The regions table alone (htmx refreshes it in place)."""
        require_scope(user, "dr.operate")
        return Template(
            "dr/_regions.html",
            context={"user": user, "f": dr_figures(request, core, dr)},
            headers={"Cache-Control": "no-store"},
        )

    @get("/evidence/{name:str}", name="console-dr-evidence", sync_to_thread=True)
    def evidence(
        self, user: ConsoleUser, name: FromPath[str], core: NamedDependency[Core]
    ) -> File:
        """The last drill's signed evidence file (only that one)."""
        require_scope(user, "dr.operate")
        drill = last_drill(core)
        if drill is None or drill["name"] != name:
            raise Problem(404, f"no drill evidence {name!r}")
        path: Path = core.settings.var_path / "dr-evidence" / name
        return File(
            path=path,
            filename=name,
            media_type="application/json",
            content_disposition_type="attachment",
        )
