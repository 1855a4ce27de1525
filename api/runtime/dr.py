"""The API's view of a DR pair: the router, its metrics, the pair's state file."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

import structlog
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily

from adapters.catalog.postgres import PostgresCatalogView
from adapters.dr.catalog_reads import Fallback, RegionCatalogs, RegionRead
from adapters.dr.health import region_status
from adapters.dr.lineage_follower import Neo4jTarget, RegionLineage
from adapters.dr.pair import REGIONS, RegionPair
from adapters.dr.primary_ledger import PrimaryFollower, open_primary_ledger
from adapters.dr.router import READ_FROM, DrRouter
from adapters.exports.view import PostgresExportsView
from adapters.ledger.store import open_ledger
from api.problems import Problem
from api.requests import is_position
from application.catalog.datasets import Datasets
from application.dr.lag_alerts import LagAlarm, LagAlerts
from application.dr.lag_samples import LagSampleLog, RegionSample, SampleClock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from eventsourcing.persistence import TrackingRecorder

    from adapters.dr.health import RegionStatus
    from adapters.ledger.store import Ledger
    from api.metrics import Metrics
    from api.settings import Settings
    from projections.catalog import CatalogPage, CatalogQuery, CatalogView
    from projections.exports import ExportsView

log = structlog.get_logger("conductor.dr")
T = TypeVar("T")
V = TypeVar("V", bound="TrackingRecorder")
WATCH_S = 0.25
"""How often the lag alert samples the standby's staleness."""
SECONDARY_READS = "conductor_dr_secondary_reads_total"
"""The counter of reads a standby answered (LagSampled.secondary_reads)."""
STALE_READS = "conductor_dr_stale_reads_total"
"""The counter of those with a non-zero staleness (LagSampled.stale_reads)."""


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
class ReadRoute(Generic[T]):
    """A routed read: a standby's answer, or None for the primary (as usual)."""

    read: RegionRead[T] | None
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
    return raw is None or is_position(raw)  # ASCII digits: int() must not fail


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
    """The router, the regions' reads, and the replica-lag alert watcher."""

    def __init__(
        self,
        router: DrRouter,
        pair: PairFile,
        alarm: LagAlarm,
        alerts: LagAlerts,
        lineage: RegionLineage | None = None,
        catalogs: RegionCatalogs | None = None,
        on_standby_read: Callable[[str, int], None] | None = None,
        regions: frozenset[str] = frozenset(),
        samples: tuple[LagSampleLog, SampleClock] | None = None,
    ) -> None:
        self.router = router
        self._regions = regions
        """Dataset regions (CONDUCTOR_REGIONS) for the region logs' registries."""
        self._registry_of: tuple[Ledger, Datasets] | None = None
        self._registry_lock = threading.Lock()
        self.lineage = lineage
        """This region's lineage read model (written by the region's follower)."""
        self.catalogs = catalogs
        """The regions' replicated read models (when the API's log is on the pair)."""
        self.pair = pair
        self._on_standby_read = on_standby_read
        """Called with (region, staleness in ms) for every read a standby answers."""
        self._pair = pair
        self._alarm = alarm
        self._alerts = alerts
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.secondary_reads_off: Callable[[], bool] = lambda: False
        """The disable-secondary-reads backout: every read goes to the primary."""
        self._samples = samples
        self.sample_read_counts: Callable[[], tuple[int, int]] = lambda: (0, 0)
        """This process's (stale reads, secondary reads) so far, for LagSampled."""

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
    ) -> ReadRoute[CatalogPage] | None:
        """A catalog search routed by x-ig-read-from (None: no pair, usual path)."""
        return self.route_catalog(headers, lambda view: view.search(query))

    def route_catalog(
        self, headers: Mapping[str, str], work: Callable[[CatalogView], T]
    ) -> ReadRoute[T] | None:
        """work on a region's catalog, routed by x-ig-read-from (see route_read)."""
        return self.route_read(headers, PostgresCatalogView, work)

    def route_exports(
        self, headers: Mapping[str, str], work: Callable[[ExportsView], T]
    ) -> ReadRoute[T] | None:
        """work on a region's exports view, routed by x-ig-read-from."""
        return self.route_read(headers, PostgresExportsView, work)

    def route_read(
        self, headers: Mapping[str, str], kind: type[V], work: Callable[[V], T]
    ) -> ReadRoute[T] | None:
        """A read-model read routed by x-ig-read-from (default ``nearest``: the
        region this API runs in, as for /v1/dr/commands); None without a pair.

        A standby answers (work on its replicated view of class ``kind``) when
        it is up, within the TTL and at or past x-ig-min-position in that view;
        otherwise (and for the primary) the route has no read and the caller
        reads the primary's view as usual. Either way the route's headers name
        the region; a standby's answer adds its position, lag and staleness.
        """
        catalogs = self.catalogs
        if catalogs is None:
            return None
        return self._route(
            headers,
            kind.__name__,
            lambda region, wanted: catalogs.read_view(
                region, kind, work, min_position=wanted
            ),
        )

    def route_datasets(
        self, headers: Mapping[str, str], work: Callable[[Datasets], T]
    ) -> ReadRoute[T] | None:
        """work on the dataset registry over a region's copy of the event log
        (GET a dataset, its history), routed by x-ig-read-from like route_read;
        the position is that log's head."""
        catalogs = self.catalogs
        if catalogs is None:
            return None
        return self._route(
            headers,
            "log",
            lambda region, wanted: catalogs.read_log(
                region, lambda log: work(self._registry(log)), min_position=wanted
            ),
        )

    def _registry(self, log: Ledger) -> Datasets:
        """A read-only registry over a region's log, kept while that copy is
        the one read (only a standby is, and copies are reopened rarely)."""
        with self._registry_lock:
            if self._registry_of is None or self._registry_of[0] is not log:
                self._registry_of = (log, Datasets(log, regions=self._regions))
            return self._registry_of[1]

    def _route(
        self,
        headers: Mapping[str, str],
        what: str,
        read: Callable[[str, int | None], RegionRead[T] | Fallback],
    ) -> ReadRoute[T]:
        raw = headers.get("x-ig-read-from", "nearest")
        state = self.pair().state
        if self.secondary_reads_off():
            read_from(raw)  # still a 400 when malformed
            return ReadRoute(
                None,
                {
                    "x-ig-read-region": state.primary,
                    "x-ig-backout": "disable-secondary-reads",
                },
            )
        region = {
            "primary": state.primary,
            "secondary": state.standby,
            "nearest": self.router.region,
        }[read_from(raw)]
        primary: ReadRoute[T] = ReadRoute(None, {"x-ig-read-region": state.primary})
        wanted = headers.get("x-ig-min-position")
        if region == state.primary or not _position(wanted):
            return primary
        got = read(region, int(wanted) if wanted else None)
        if isinstance(got, Fallback):
            log.info(
                "region_read_fell_back",
                region=region,
                view=what,
                reason=got.reason,
                lag_ms=got.stale_ms,
            )
            return primary
        answer = {
            "x-ig-read-region": region,
            "x-ig-position": str(got.position),
            "x-ig-lag-events": str(got.lag_events),
        }
        if got.stale_ms:
            answer["x-ig-stale-read"] = str(got.stale_ms)
        if self._on_standby_read is not None:
            self._on_standby_read(region, got.stale_ms)
        return ReadRoute(got, answer)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            pair = self._pair()
            region = pair.state.standby
            status = region_status(pair, region)
            lag = status.lag_ms if status.role == "standby" else None
            now = time.monotonic()
            self._sample(pair, status, lag, now)
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

    def _sample(
        self, pair: RegionPair, standby: RegionStatus, lag: int | None, now: float
    ) -> None:
        """Record LagSampled for both regions when the clock says one is due
        (every CONDUCTOR_DR_SAMPLE_S, and at once on a threshold crossing)."""
        if self._samples is None:
            return
        samples, clock = self._samples
        cause = clock.due(lag, now)
        if cause is None:
            return
        stale, secondary = self.sample_read_counts()
        statuses = [
            standby if region == standby.region else region_status(pair, region)
            for region in REGIONS
        ]
        try:
            position = samples.record_samples(
                tuple(
                    RegionSample(
                        region=s.region,
                        role=s.role,
                        epoch=pair.state.epoch if s.epoch is None else s.epoch,
                        lag_ms=s.lag_ms,
                        lag_bytes=s.lag_bytes,
                        read_only=s.role != "primary",
                        stale_reads=stale,
                        secondary_reads=secondary,
                    )
                    for s in statuses
                ),
                at_ms=int(time.time() * 1000),
                cause=cause,
            )
        except Exception:  # the log may be switching primaries: sample next time
            clock.last_at = None
            log.warning("lag_sample_failed", cause=cause, exc_info=True)
            return
        log.info("lag_sampled", cause=cause, lag_ms=lag, position=position)


def uses_dr_ledger(settings: Settings) -> bool:
    """Whether the API's own log lives on the DR pair (no database URL given)."""
    return bool(settings.dr_root) and not settings.database_url


def dr_ledger(settings: Settings, *, pool_size: int | None = None) -> Ledger:
    """The API's event log on the pair's primary, following it across epochs."""
    return open_primary_ledger(
        PairFile(Path(settings.dr_root)),
        pool_size=settings.pool_size if pool_size is None else pool_size,
    )


def api_ledger(settings: Settings, *, pool_size: int) -> Ledger:
    """The API's event log as the API opens it: on the pair, or the database URL.

    For the CLI tools that read the log (``log verify``, ``audit export-log``):
    with CONDUCTOR_DR_ROOT set and no CONDUCTOR_DATABASE_URL, the pair's
    primary; else ``settings.resolved_database_url``.
    """
    if uses_dr_ledger(settings):
        return dr_ledger(settings, pool_size=pool_size)
    return open_ledger(settings.resolved_database_url, pool_size=pool_size)


def ledger_label(settings: Settings) -> str:
    """Where the API's log is, for banners (the URL's password redacted)."""
    if uses_dr_ledger(settings):
        try:
            state = PairFile(Path(settings.dr_root))().state
        except OSError:  # the API will say why when it opens the log
            return f"DR pair {settings.dr_root} (no dr.json)"
        return (
            f"DR pair {settings.dr_root}, primary {state.primary}, epoch {state.epoch}"
        )
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", settings.resolved_database_url)


def on_primary_switch(ledger: Ledger, *listeners: Callable[[str, int], None]) -> bool:
    """Call each ``listener(region, epoch)`` when the API's log moves to a new
    primary or epoch; whether the log follows a pair (else nothing happens).

    Idempotent per listener. Wire the per-process search cache's ``clear`` (a
    lossy failover reuses positions) and every runner's ``resume`` (a runner
    that failed during the switch retries at once, not after its backoff).
    """
    follower = getattr(ledger, "follower", None)
    if not isinstance(follower, PrimaryFollower):
        return False
    for listener in listeners:
        follower.add_listener(listener)
    return True


def dr_runtime(settings: Settings, metrics: Metrics, ledger: Ledger) -> DrRuntime:
    """The DR runtime over the pair in settings.dr_root, its metrics registered."""
    if settings.dr_region not in REGIONS:
        msg = f"CONDUCTOR_DR_REGION must be one of {', '.join(REGIONS)}"
        raise ValueError(msg)
    pair = PairFile(Path(settings.dr_root))
    counted = ReadCounters(metrics)
    metrics.registry.register(_LagCollector(pair))
    router = DrRouter(
        pair,
        region=settings.dr_region,
        ttl_ms=settings.stale_read_ttl_ms,
        on_standby_read=counted.count,
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
            namespace=settings.neo4j_namespace,
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
    runtime = DrRuntime(
        router,
        pair,
        alarm,
        LagAlerts(ledger),
        lineage,
        catalogs,
        on_standby_read=counted.count,
        regions=frozenset(settings.regions),
        samples=(
            LagSampleLog(ledger),
            SampleClock(
                interval_s=settings.dr_sample_s, threshold_ms=settings.dr_lag_alert_ms
            ),
        ),
    )
    # Hook: the standby reads this process served, for LagSampled.
    runtime.sample_read_counts = counted.totals
    return runtime


class ReadCounters:
    """The secondary-read and stale-read counters (by region): stale ÷
    secondary is the stale-read rate."""

    def __init__(self, metrics: Metrics) -> None:
        self.secondary = Counter(
            SECONDARY_READS.removesuffix("_total"),
            "Reads answered by a standby region (x-ig-read-region names it), "
            "stale or not: the denominator of the stale-read rate",
            ["region"],
            registry=metrics.registry,
        )
        self.stale = Counter(
            STALE_READS.removesuffix("_total"),
            "Reads answered by a standby with a non-zero x-ig-stale-read",
            ["region"],
            registry=metrics.registry,
        )
        self._lock = threading.Lock()
        self._totals = [0, 0]

    def count(self, region: str, stale_ms: int) -> None:
        """One read a standby answered, with its staleness."""
        self.secondary.labels(region).inc()
        if stale_ms:
            self.stale.labels(region).inc()
        with self._lock:
            self._totals[0] += bool(stale_ms)
            self._totals[1] += 1

    def totals(self) -> tuple[int, int]:
        """(stale reads, secondary reads) this process counted, every region."""
        with self._lock:
            return self._totals[0], self._totals[1]
