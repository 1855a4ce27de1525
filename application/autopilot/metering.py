"""The meter: every request costs units; batches flush to the log as UsageRecorded.

Counts accumulate in memory per (tenant, route class) and flush every few
seconds and on shutdown, one UsageRecorded per tenant per flush. A crash
loses at most one flush interval of metering, never a command (commands are
in the log before their response is sent; metering is not on that path).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from domain.autopilot.budget import dec
from domain.autopilot.usage import Counts, latency_slot

if TYPE_CHECKING:
    from application.autopilot.budgets import Budgets

log = structlog.get_logger("conductor.metering")


@dataclass(frozen=True)
class PriceTable:
    """Units per call, per GB exported, per 1,000 records embedded, per drill."""

    query_call: float = 1.0
    command_call: float = 2.0
    export_gb: float = 1000.0
    embedding_1k: float = 10.0
    drill_run: float = 500.0


def route_class(method: str, path: str) -> str:
    """The SLO and pricing class of a request."""
    if path.startswith(("/v1/exports", "/v1/policies", "/v1/proofs")):
        return "export"
    if path.startswith("/v1/er"):
        return "embedding"
    if path.startswith("/v1/dr"):
        return "drill"
    return "query" if method in {"GET", "HEAD"} else "command"


class Meter:
    """Per-process accumulator; thread-safe; flushed by a job and on shutdown."""

    def __init__(self, budgets: Budgets, prices: PriceTable | None = None) -> None:
        self.budgets = budgets
        self.prices = prices or PriceTable()
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], Counts] = {}
        self._since_ms: int | None = None
        self.flushed = 0

    def call_price(self, route_class: str, method: str) -> float:
        """What one call costs (volume charges come on top, via charge())."""
        if route_class == "query" or method in {"GET", "HEAD"}:
            return self.prices.query_call
        return self.prices.command_call

    def request(
        self,
        tenant: str,
        route_class: str,
        *,
        method: str,
        status: int,
        latency_ms: float,
        now_ms: int,
    ) -> None:
        """Meter one answered request (a 429 costs nothing and is not an error)."""
        throttled = status == 429
        units = 0.0 if throttled else self.call_price(route_class, method)
        with self._lock:
            if self._since_ms is None:
                self._since_ms = now_ms
            counts = self._counts.setdefault((tenant, route_class), Counts())
            counts.requests += 1
            counts.errors += status >= 500
            counts.throttled += throttled
            counts.units += units
            if not throttled:
                counts.hist[latency_slot(latency_ms)] += 1

    def pending(self) -> int:
        """Requests metered since the last flush."""
        with self._lock:
            return sum(c.requests for c in self._counts.values())

    def add(self, tenant: str, route_class: str, counts: Counts, now_ms: int) -> None:
        """Add counts summed elsewhere (the simulation meters a second at once)."""
        with self._lock:
            if self._since_ms is None:
                self._since_ms = now_ms
            self._counts.setdefault((tenant, route_class), Counts()).add(counts)

    def charge(self, tenant: str, route_class: str, units: float, now_ms: int) -> None:
        """Add a volume charge (GB exported, records embedded, drills run)."""
        with self._lock:
            if self._since_ms is None:
                self._since_ms = now_ms
            self._counts.setdefault((tenant, route_class), Counts()).units += units

    def charge_export(self, tenant: str, nbytes: int, now_ms: int) -> None:
        self.charge(tenant, "export", nbytes / 1e9 * self.prices.export_gb, now_ms)

    def charge_embeddings(self, tenant: str, records: int, now_ms: int) -> None:
        self.charge(
            tenant, "embedding", records / 1000 * self.prices.embedding_1k, now_ms
        )

    def flush(self, now_ms: int) -> int | None:
        """Write one UsageRecorded per tenant; returns the last log position.

        On a failed write the counts go back into the accumulator, so a
        database outage delays metering instead of losing it.
        """
        with self._lock:
            taken, self._counts = self._counts, {}
            since, self._since_ms = self._since_ms, None
        if not taken:
            return None
        per_tenant: dict[str, dict[str, dict[str, Any]]] = {}
        for (tenant, route_class), counts in taken.items():
            per_tenant.setdefault(tenant, {})[route_class] = {
                "requests": counts.requests,
                "errors": counts.errors,
                "throttled": counts.throttled,
                "units": dec(counts.units),
                "hist": list(counts.hist),
            }
        batches = [
            {
                "tenant": tenant,
                "start_ms": since if since is not None else now_ms,
                "end_ms": now_ms,
                "classes": classes,
            }
            for tenant, classes in sorted(per_tenant.items())
        ]
        try:
            position = self.budgets.record_usage(batches)
        except Exception:
            with self._lock:
                for key, counts in taken.items():
                    self._counts.setdefault(key, Counts()).add(counts)
                if since is not None:
                    self._since_ms = min(since, self._since_ms or since)
            log.warning("metering_flush_failed", tenants=len(batches), exc_info=True)
            raise
        self.flushed += len(batches)
        return position
