"""The DR state read model: LagSampled folded per region, GET /v1/dr/state.

The first tests record samples in the log directly (both backends); the
rest run the real watcher on a DR pair: samples at the interval and on a
threshold crossing, a failover's roles and epoch, stale reads while the
link is cut.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from eventsourcing.utils import get_topic

from adapters.dr.health import wait_fresh
from adapters.dr.roles import switchover
from api.bootstrap import Conductor
from api.runtime.dr import SECONDARY_READS
from domain.dr.lag_samples import LagSamples
from tests.conftest import bearer
from tests.integration.dr_support import pair_api, pair_site

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from litestar.testing import TestClient

    from adapters.dr.site import Site

pytestmark = pytest.mark.integration
DR = bearer("ops", "dr.operate")


def _services(client: TestClient[Any]) -> Conductor:
    services = client.app.state.conductor
    assert isinstance(services, Conductor)
    return services


def _record(
    services: Conductor,
    region: str,
    role: str,
    at: datetime,
    *,
    stale: int,
    secondary: int,
    epoch: int = 1,
) -> int:
    """One LagSampled as the watcher records it, taken at ``at``."""
    ledger = services.dr.lag_alerts  # any LedgerApplication over the log saves
    hour = LagSamples.hour_of(int(at.timestamp() * 1000))
    found = ledger._load(LagSamples.create_id(region, hour))
    aggregate = found if found is not None else LagSamples(region=region, hour=hour)
    aggregate.sample(
        role=role,
        epoch=epoch,
        lag_ms=0 if role == "primary" else 1200,
        lag_bytes=4096 if role == "primary" else None,
        read_only=role != "primary",
        stale_reads=stale,
        secondary_reads=secondary,
    )
    for pending in aggregate._pending_events:
        object.__setattr__(pending, "timestamp", at)
    return int(ledger.save(aggregate)[-1].notification.id)


def _state(client: TestClient[Any], position: int) -> Any:
    answer = client.get(
        "/v1/dr/state", headers={**DR, "x-ig-min-position": str(position)}
    )
    assert answer.status_code == 200, answer.text
    assert int(answer.headers["x-ig-position"]) >= position
    return answer.json()


def _history(services: Conductor, now: datetime) -> int:
    """A day of samples: B standby throughout, A primary."""
    position = 0
    cumulative = [(0, 0), (10, 100), (10, 200), (40, 300), (45, 400)]
    ages = [timedelta(hours=23), timedelta(hours=2), timedelta(minutes=30)]
    ages += [timedelta(minutes=4), timedelta(0)]
    for (stale, secondary), age in zip(cumulative, ages, strict=True):
        _record(services, "A", "primary", now - age, stale=stale, secondary=secondary)
        position = _record(
            services, "B", "standby", now - age, stale=stale, secondary=secondary
        )
    return position


def test_state_answers_the_newest_sample_and_windowed_stale_rates(
    client: TestClient[Any],
) -> None:
    """Rates are stale / secondary reads summed over 5 m, 1 h and 1 d."""
    assert client.get("/v1/dr/state", headers=DR).json()["regions"] == []
    now = datetime.now(UTC).replace(microsecond=0)
    position = _history(_services(client), now)
    body = _state(client, position)
    by_region = {r["region"]: r for r in body["regions"]}
    assert set(by_region) == {"A", "B"}
    a, b = by_region["A"], by_region["B"]
    assert (a["role"], a["readOnly"], a["lagBytes"], a["epoch"]) == (
        "primary",
        False,
        4096,
        1,
    )
    assert (b["role"], b["readOnly"], b["lagMs"], b["samples"]) == (
        "standby",
        True,
        1200,
        5,
    )
    assert datetime.fromisoformat(b["sampledAt"]) == now
    assert b["position"] == position
    # deltas: 2 h ago +10/+100, 30 m +0/+100, 4 m +30/+100, now +5/+100
    assert b["staleReadRate"] == {
        "5m": pytest.approx(35 / 200, abs=1e-6),
        "1h": pytest.approx(35 / 300, abs=1e-6),
        "1d": pytest.approx(45 / 400, abs=1e-6),
    }
    assert a["staleReadRate"] == {"5m": None, "1h": None, "1d": None}
    assert body["position"] >= position
    # dr.operate only, like every /v1/dr route
    refused = client.get("/v1/dr/state", headers=bearer("ops", "catalog.read"))
    assert refused.status_code == 403


def test_a_rebuilt_state_has_the_same_rows(client: TestClient[Any]) -> None:
    """Dropping the view and replaying the log gives the same regions."""
    services = _services(client)
    position = _history(services, datetime.now(UTC).replace(microsecond=0))
    live = _state(client, position)["regions"]
    runner = services.core.runners["dr-state"]
    runner.stop()
    runner.projection.view.reset()
    runner.catch_up()
    assert services.dr.state.regions() != []
    assert _state(client, position)["regions"] == live


def test_a_late_read_waits_for_the_position_or_is_a_503(
    client: TestClient[Any],
) -> None:
    """x-ig-min-position past the log's head is the usual projection-lagging 503."""
    answer = client.get(
        "/v1/dr/state", headers={**DR, "x-ig-min-position": "999999999"}
    )
    assert answer.status_code == 503
    assert answer.json()["type"] == "/problems/projection-lagging"


# -- on a DR pair: the real watcher --------------------------------------------------

SAMPLE_S = 0.5
THRESHOLD_MS = 800


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from pair_site(tmp_path_factory, "drstate")


@pytest.fixture(scope="module")
def api(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient[Any]]:
    yield from pair_api(
        site,
        tmp_path_factory,
        "drstatevar",
        log_on_pair=False,
        projection_poll_s=0.05,
        metering=False,
        dr_sample_s=SAMPLE_S,
        dr_lag_alert_ms=THRESHOLD_MS,
        dr_lag_alert_for_s=3600.0,  # the alert itself is not under test here
    )


def _sampled(services: Conductor, after: int) -> list[tuple[int, Any]]:
    """(position, LagSampled) recorded after ``after``."""
    recorder = services.core.ledger.recorder
    mapper = services.catalog.registry.mapper
    found = recorder.select_notifications(
        start=after + 1,
        limit=10_000,
        topics=[get_topic(LagSamples.LagSampled)],
    )
    return [(n.id, mapper.to_domain_event(n)) for n in found]


def _head(services: Conductor) -> int:
    return int(services.core.ledger.recorder.max_notification_id() or 0)


def _until(what: str, check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.05)
    return got


def _command(api: TestClient[Any], key: str) -> None:
    written = api.post(
        "/v1/dr/commands", json={"key": key, "payload": {"n": 1}}, headers=DR
    )
    assert written.status_code in {200, 201}, written.text


@pytest.mark.postgres
def test_samples_come_at_the_interval_not_per_heartbeat(
    site: Site, api: TestClient[Any]
) -> None:
    """Both regions are sampled every CONDUCTOR_DR_SAMPLE_S (here 0.5 s)."""
    services = _services(api)
    wait_fresh(site.pair)
    before = _head(services)
    time.sleep(3.2)
    samples = [e for _, e in _sampled(services, before) if e.cause == "interval"]
    per_region = {r: [e for e in samples if e.region == r] for r in ("A", "B")}
    for region, taken in per_region.items():
        # 6 intervals in 3.2 s (the watcher's 250 ms beat would give 12)
        assert 4 <= len(taken) <= 8, (region, len(taken))
        gaps = [
            (b.timestamp - a.timestamp).total_seconds()
            for a, b in itertools.pairwise(taken)
        ]
        assert min(gaps) >= SAMPLE_S - 0.05, gaps
    a, b = per_region["A"][-1], per_region["B"][-1]
    assert (a.role, a.read_only, a.epoch) == ("primary", False, site.pair.state.epoch)
    assert (b.role, b.read_only) == ("standby", True)
    body = _state(api, _head(services))
    roles = {r["region"]: r["role"] for r in body["regions"]}
    assert roles == {"A": "primary", "B": "standby"}


@pytest.mark.postgres
def test_a_threshold_crossing_is_sampled_at_once_and_stale_reads_counted(
    site: Site, api: TestClient[Any]
) -> None:
    """Cutting the link pushes B's lag over the threshold: a sample says
    'above' at once; stale secondary reads raise the counters; restoring
    the link gives a 'below' sample; GET /v1/dr/state shows the rate."""
    services = _services(api)
    wait_fresh(site.pair)
    _command(api, "drstate-1")
    before = _head(services)
    site.relay.cut()
    try:
        above = _until(
            "no 'above' sample",
            lambda: [e for _, e in _sampled(services, before) if e.cause == "above"],
        )[0]
        assert above.region in {"A", "B"}
        crossed = [e for _, e in _sampled(services, before) if e.region == "B"]
        lag = next(e for e in crossed if e.cause == "above").lag_ms
        assert lag > THRESHOLD_MS
        for _ in range(5):  # within the TTL: answered by B, stale
            got = api.get(
                "/v1/dr/commands/drstate-1",
                headers={**DR, "x-ig-read-from": "secondary"},
            )
            assert got.status_code == 200, got.text
            if "x-ig-stale-read" in got.headers:
                break
    finally:
        site.relay.restore()
    wait_fresh(site.pair)
    below = _until(
        "no 'below' sample",
        lambda: [(p, e) for p, e in _sampled(services, before) if e.cause == "below"],
    )
    position, _ = below[-1]
    taken = [e for _, e in _sampled(services, before) if e.region == "B"]
    assert taken[-1].stale_reads > taken[0].stale_reads  # the stale reads counted
    rate = _state(api, position)
    b = next(r for r in rate["regions"] if r["region"] == "B")
    assert b["role"] == "standby"
    # conductor_dr_secondary_reads_total is the denominator: every read B answered
    registry = services.core.metrics.registry
    assert (registry.get_sample_value(SECONDARY_READS, {"region": "B"}) or 0) > 0
    assert 0 < b["staleReadRate"]["5m"] <= 1


@pytest.mark.postgres
def test_the_state_follows_a_failover_to_new_roles_and_epoch(
    site: Site, api: TestClient[Any]
) -> None:
    """After B is promoted the read model says B primary, A standby, epoch+1."""
    services = _services(api)
    wait_fresh(site.pair)
    switched = switchover(site.pair, "B", site.relay)

    def moved() -> Any:
        body = _state(api, _head(services))
        by_region = {r["region"]: r for r in body["regions"]}
        b, a = by_region.get("B", {}), by_region.get("A", {})
        return (
            b.get("role") == "primary"
            and b.get("epoch") == switched.epoch
            and b.get("readOnly") is False
            and a.get("role") == "standby"
            and a.get("readOnly") is True
        )

    _until("the state never showed the switch", moved)
    assert switched.epoch > 1
