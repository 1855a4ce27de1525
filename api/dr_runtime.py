"""The API's view of a DR pair: the router, its metrics, the pair's state file."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from adapters.dr.health import region_status
from adapters.dr.pair import REGIONS, RegionPair
from adapters.dr.router import DrRouter
from application.lag_alerts import LagAlarm, LagAlerts

if TYPE_CHECKING:
    from collections.abc import Iterator

    from adapters.ledger.store import Ledger
    from api.metrics import Metrics
    from api.settings import Settings

log = structlog.get_logger("conductor.dr")
WATCH_S = 0.25
"""How often the lag alert samples the standby's staleness."""


class PairFile:
    """The pair described by dr.json, reloaded when the file changes."""

    def __init__(self, root: Path) -> None:
        self._path = root / "dr.json"
        self._root = root
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._pair: RegionPair | None = None

    def __call__(self) -> RegionPair:
        st = self._path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if self._pair is None or stamp != self._stamp:
                self._pair, self._stamp = RegionPair.load(self._root), stamp
            return self._pair


class _LagCollector:
    """Replica lag (ms from the replayed heartbeat, bytes from the primary)."""

    def __init__(self, pair: PairFile) -> None:
        self._pair = pair

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag_ms = GaugeMetricFamily(
            "conductor_dr_replica_lag_ms",
            "Staleness of a standby region: age of its newest replayed heartbeat",
            labels=["region"],
        )
        lag_bytes = GaugeMetricFamily(
            "conductor_dr_replica_lag_bytes",
            "WAL bytes the primary has written that its standby has not replayed",
        )
        epoch = GaugeMetricFamily("conductor_dr_epoch", "The DR pair's fencing epoch")
        pair = self._pair()
        for region in REGIONS:
            status = region_status(pair, region)
            if status.role == "standby" and status.lag_ms is not None:
                lag_ms.add_metric([region], status.lag_ms)
            if status.role == "primary" and status.lag_bytes is not None:
                lag_bytes.add_metric([], status.lag_bytes)
        epoch.add_metric([], pair.state.epoch)
        yield lag_ms
        yield lag_bytes
        yield epoch


class DrRuntime:
    """The router, and a watcher that fires and clears the replica-lag alert."""

    def __init__(
        self, router: DrRouter, pair: PairFile, alarm: LagAlarm, alerts: LagAlerts
    ) -> None:
        self.router = router
        self._pair = pair
        self._alarm = alarm
        self._alerts = alerts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="dr-lag", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            pair = self._pair()
            region = pair.state.standby
            status = region_status(pair, region)
            lag = status.lag_ms if status.role == "standby" else None
            now = time.monotonic()
            change = self._alarm.observe(lag, now)
            if change == "fire" and lag is not None:
                since = self._alarm.above_since or now
                position = self._alerts.fire_alert(
                    region=region,
                    lag_ms=lag,
                    threshold_ms=self._alarm.threshold_ms,
                    above_for_ms=int((now - since) * 1000),
                )
                log.warning(
                    "replica_lag_alert_fired",
                    region=region,
                    lag_ms=lag,
                    position=position,
                )
            elif change == "clear" and lag is not None:
                position = self._alerts.clear_alert(region=region, lag_ms=lag)
                log.info(
                    "replica_lag_alert_cleared",
                    region=region,
                    lag_ms=lag,
                    position=position,
                )


def dr_runtime(settings: Settings, metrics: Metrics, ledger: Ledger) -> DrRuntime:
    """The DR runtime over the pair in settings.dr_root, its metrics registered."""
    if settings.dr_region not in REGIONS:
        msg = f"CONDUCTOR_DR_REGION must be one of {', '.join(REGIONS)}"
        raise ValueError(msg)
    pair = PairFile(Path(settings.dr_root))
    stale_reads = Counter(
        "conductor_dr_stale_reads_total",
        "Reads answered by a standby with a non-zero x-ig-stale-read",
        registry=metrics.registry,
    )
    metrics.registry.register(_LagCollector(pair))
    router = DrRouter(
        pair,
        region=settings.dr_region,
        ttl_ms=settings.stale_read_ttl_ms,
        on_stale_read=lambda _ms: stale_reads.inc(),
    )
    alarm = LagAlarm(
        threshold_ms=settings.dr_lag_alert_ms, for_s=settings.dr_lag_alert_for_s
    )
    return DrRuntime(router, pair, alarm, LagAlerts(ledger))
