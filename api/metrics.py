"""Prometheus metrics, one registry per app (so tests can build many apps)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from domain.er.evaluation import Figures
    from projections.runner import BatchRunner

log = structlog.get_logger("conductor.metrics")


class _ProjectionCollector:
    """Projection position and lag, read at scrape time (never stale)."""

    def __init__(self, runners: Callable[[], list[BatchRunner]]) -> None:
        self._runners = runners

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "conductor_projection_lag_events",
            "Events in the log the projection has not processed yet",
            labels=["projection"],
        )
        position = GaugeMetricFamily(
            "conductor_projection_position",
            "Last log position the projection has processed",
            labels=["projection"],
        )
        for runner in self._runners():
            status = runner.status()
            lag.add_metric([runner.name], status.lag)
            position.add_metric([runner.name], status.position)
        yield lag
        yield position


class _GateCollector:
    """Backout switches and policy-sandbox kills, read at scrape time."""

    def __init__(
        self,
        switches: Callable[[], Mapping[str, bool]],
        kills: Callable[[], Mapping[str, int]],
    ) -> None:
        self._switches = switches
        self._kills = kills

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        engaged = GaugeMetricFamily(
            "conductor_backout_switch",
            "1 while a backout switch is engaged (conductor switch on ...)",
            labels=["switch"],
        )
        for name, on in self._switches().items():
            engaged.add_metric([name], 1.0 if on else 0.0)
        kills = CounterMetricFamily(
            "conductor_policy_limit_kills",
            "Sandboxed policy evaluations stopped at a limit, by limit",
            labels=["limit"],
        )
        for limit, count in sorted(self._kills().items()):
            kills.add_metric([limit], count)
        yield engaged
        yield kills


class _ErEvalCollector:
    """The latest ER evaluation in the log, read at scrape time."""

    def __init__(self, latest: Callable[[], Figures | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gain = GaugeMetricFamily(
            "conductor_er_recall_gain",
            "Latest ER eval: relative candidate-recall gain of blocking|ANN over "
            "blocking, (assist - baseline) / baseline (the er-recall guard's figure)",
        )
        delta = GaugeMetricFamily(
            "conductor_er_recall_delta",
            "Latest ER eval: absolute difference, pairs completeness of "
            "blocking|ANN minus blocking's (not what the guard compares)",
        )
        # No eval yet (or the log unreadable for a moment): no sample.
        try:
            figures = self._latest()
        except Exception:  # a scrape must not fail on the log
            log.warning("er_eval_unreadable", exc_info=True)
            figures = None
        if figures is not None:
            if figures.recall_gain is not None:
                gain.add_metric([], float(figures.recall_gain))
            delta.add_metric([], float(figures.recall_delta))
        yield gain
        yield delta


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self.request_seconds = Histogram(
            "conductor_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(
                0.001,
                0.0025,
                0.005,
                0.01,
                0.025,
                0.05,
                0.1,
                0.25,
                0.5,
                1,
                2.5,
                5,
            ),
        )
        self.events_appended = Counter(
            "conductor_events_appended_total",
            "Events appended to the log by this process",
            registry=self.registry,
        )
        self.commit_batch = Histogram(
            "conductor_group_commit_events",
            "Events per group-commit transaction",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        )
        self.projected_events = Counter(
            "conductor_projection_events_total",
            "Events read by each projection",
            ["projection"],
            registry=self.registry,
        )
        self.export_proof_failures = Counter(
            "conductor_export_proof_failures_total",
            "Exports that ended without a proof, and proofs asked for too early",
            ["reason"],
            registry=self.registry,
        )
        self.export_decisions = Counter(
            "conductor_export_decisions_total",
            "Export requests judged by the policy, by outcome",
            ["allow"],
            registry=self.registry,
        )
        self.exports_finished = Counter(
            "conductor_exports_total",
            "Background export runs that ended, by final status",
            ["status"],
            registry=self.registry,
        )
        self.export_seconds = Histogram(
            "conductor_export_seconds",
            "Wall time of a background export run (DLP, delivery and proof)",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900),
        )
        self.catalog_coverage = Gauge(
            "conductor_catalog_coverage_ratio",
            "Share of a tenant's active datasets (data files, ER job sources, "
            "exported, lineage-linked and CI-gate-named datasets) that an active "
            "entry registers",
            ["tenant"],
            registry=self.registry,
        )

        self.er_index_rebuilds = Counter(
            "conductor_er_index_rebuilds_total",
            "ANN indexes rebuilt from stored vectors, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.er_cap_refusals = Counter(
            "conductor_er_cap_refusals_total",
            "ER batches refused (429) by the per-tenant records-per-day cap",
            registry=self.registry,
        )
        self.er_records_embedded = Counter(
            "conductor_er_records_embedded_total",
            "Records embedded by ER jobs",
            registry=self.registry,
        )

        self.burn_rate = Gauge(
            "conductor_burn_rate",
            "Burn rate by tenant, kind (cost, or the worst SLO) and window",
            ["tenant", "kind", "window"],
            registry=self.registry,
        )
        self.cost_cap = Gauge(
            "conductor_cost_cap_units_per_second",
            "The autopilot's spending cap on a tenant (0: none)",
            ["tenant"],
            registry=self.registry,
        )
        self.autopilot_actions = Counter(
            "conductor_autopilot_actions_total",
            "Actions the autopilot took, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "conductor_throttled_requests_total",
            "Requests refused with 429 by a tenant's token bucket",
            ["tenant"],
            registry=self.registry,
        )

    def autopilot_observed(self, burns: Mapping[str, Any]) -> None:
        """Gauges from one controller tick (a TenantBurn per tenant)."""
        for tenant, burn in burns.items():
            for window, value in burn.cost.burn.items():
                self.burn_rate.labels(tenant, "cost", window).set(value)
            for window, per_class in burn.slo.items():
                worst = max(
                    (max(slis.values()) for slis in per_class.values()), default=0.0
                )
                self.burn_rate.labels(tenant, "slo", window).set(worst)

    def watch_gate(
        self,
        switches: Callable[[], Mapping[str, bool]],
        kills: Callable[[], Mapping[str, int]],
    ) -> None:
        self.registry.register(_GateCollector(switches, kills))

    def watch_er_eval(self, latest: Callable[[], Figures | None]) -> None:
        """Serve the latest ER evaluation's gain and delta (read from the log)."""
        self.registry.register(_ErEvalCollector(latest))

    def observe_request(
        self, method: str, route: str, status: int, seconds: float
    ) -> None:
        """One latency sample; label children are cached (labels() is not free)."""
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.request_seconds.labels(method, route, str(status))
            self._request_children[key] = child
        child.observe(seconds)

    def watch_projections(self, runners: Callable[[], list[BatchRunner]]) -> None:
        self.registry.register(_ProjectionCollector(runners))

    def committed(self, _position: int, events: int) -> None:
        self.events_appended.inc(events)
        self.commit_batch.observe(events)

    def projected(self, name: str, events: int, _position: int) -> None:
        self.projected_events.labels(name).inc(events)
