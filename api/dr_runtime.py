"""The API's view of a DR pair: the router, its metrics, the pair's state file."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from adapters.dr.catalog_reads import Fallback, RegionCatalogs
from adapters.dr.health import region_status
from adapters.dr.lineage_follower import Neo4jTarget, RegionLineage
from adapters.dr.pair import REGIONS, RegionPair
from adapters.dr.primary_ledger import open_primary_ledger
from adapters.dr.router import READ_FROM, DrRouter
from api.problems import Problem
from application.lag_alerts import LagAlarm, LagAlerts

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from adapters.ledger.store import Ledger
    from api.metrics import Metrics
    from api.settings import Settings
    from projections.catalog import CatalogPage, CatalogQuery

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


@dataclass(frozen=True)
class CatalogRoute:
    """A routed catalog read: a standby's page, or None for the primary."""

    page: CatalogPage | None
    headers: dict[str, str]


def read_from(raw: str) -> str:
    """The x-ig-read-from value, or a 400 problem naming the header."""
    value = raw.strip().lower()
    if value not in READ_FROM:
        raise Problem(
            400,
            f"x-ig-read-from must be one of {', '.join(READ_FROM)}",
            errors=[
                {
                    "field": "x-ig-read-from",
                    "rule": "enum",
                    "message": f"one of {', '.join(READ_FROM)}",
                }
            ],
        )
    return value


def _position(raw: str | None) -> bool:
    """Whether an x-ig-min-position is absent or well formed (else: primary)."""
    return raw is None or (raw.isdigit() and len(raw) <= 18)


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
    """The router, the region's lineage store, and the replica-lag alert watcher."""

    def __init__(
        self,
        router: DrRouter,
        pair: PairFile,
        alarm: LagAlarm,
        alerts: LagAlerts,
        lineage: RegionLineage | None = None,
        catalogs: RegionCatalogs | None = None,
        on_stale_read: Callable[[int], None] | None = None,
    ) -> None:
        self.router = router
        self.lineage = lineage
        """This region's lineage read model (written by the region's follower)."""
        self.catalogs = catalogs
        """The regions' replicated catalogs (when the API's log is on the pair)."""
        self.pair = pair
        self._on_stale_read = on_stale_read
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
        if self.lineage is not None:
            self.lineage.close()
        if self.catalogs is not None:
            self.catalogs.close()

    def search_catalog(
        self, headers: Mapping[str, str], query: CatalogQuery
    ) -> CatalogRoute | None:
        """A catalog search routed by x-ig-read-from (None: no header, usual path).

        A standby answers when it is up, within the TTL and at or past
        x-ig-min-position; otherwise (and for the primary) the route has no
        page and the caller reads the primary's catalog as usual.
        """
        raw = headers.get("x-ig-read-from")
        if raw is None or self.catalogs is None:
            return None
        state = self.pair().state
        region = {
            "primary": state.primary,
            "secondary": state.standby,
            "nearest": self.router.region,
        }[read_from(raw)]
        primary = CatalogRoute(None, {"x-ig-read-region": state.primary})
        wanted = headers.get("x-ig-min-position")
        if region == state.primary or not _position(wanted):
            return primary
        read = self.catalogs.read(
            region,
            lambda view: view.search(query),
            min_position=int(wanted) if wanted else None,
        )
        if isinstance(read, Fallback):
            log.info(
                "catalog_read_fell_back",
                region=region,
                reason=read.reason,
                lag_ms=read.stale_ms,
            )
            return primary
        answer = {
            "x-ig-read-region": region,
            "x-ig-position": str(read.position),
            "x-ig-lag-events": str(read.lag_events),
            "x-ig-cache": "miss",
        }
        if read.stale_ms:
            answer["x-ig-stale-read"] = str(read.stale_ms)
            if self._on_stale_read is not None:
                self._on_stale_read(read.stale_ms)
        return CatalogRoute(read.value, answer)

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


def uses_dr_ledger(settings: Settings) -> bool:
    """Whether the API's own log lives on the DR pair (no database URL given)."""
    return bool(settings.dr_root) and not settings.database_url


def dr_ledger(settings: Settings) -> Ledger:
    """The API's event log on the pair's primary, following it across epochs."""
    return open_primary_ledger(
        PairFile(Path(settings.dr_root)), pool_size=settings.pool_size
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
    neo4j = (
        Neo4jTarget(
            uri=settings.neo4j_uri,
            user=settings.neo4j_user,
            password=settings.neo4j_password,
            database=settings.neo4j_database,
        )
        if settings.neo4j_uri
        else None
    )
    lineage = RegionLineage(pair(), settings.dr_region, neo4j)
    catalogs = (
        RegionCatalogs(pair, ttl_ms=settings.stale_read_ttl_ms)
        if uses_dr_ledger(settings)
        else None  # the catalog is in CONDUCTOR_DATABASE_URL, not on the pair
    )
    return DrRuntime(
        router,
        pair,
        alarm,
        LagAlerts(ledger),
        lineage,
        catalogs,
        on_stale_read=lambda _ms: stale_reads.inc(),
    )
