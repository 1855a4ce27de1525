"""DR pair: mTLS, streaming, the router's headers, TTL fencing and 503s.

One pair of real PostgreSQL 15 clusters (sync mode, relayed link) is shared by
the module; every test leaves it with the link up and A as the primary.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
import trustme
from litestar.testing import TestClient

from adapters.dr.health import region_status
from adapters.dr.tls import CertificateAuthority
from api.app import create_app
from api.settings import Settings
from tests.conftest import SECRET, bearer
from tests.integration.dr_support import TTL_MS, pair_api, pair_site

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from adapters.dr.site import Site

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from pair_site(tmp_path_factory, "drpair")


@pytest.fixture(scope="module")
def api(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient[Any]]:
    yield from pair_api(
        site,
        tmp_path_factory,
        "drvar",
        log_on_pair=False,
        dr_lag_alert_ms=300,
        dr_lag_alert_for_s=0.5,
    )


def _count(site: Site, region: str) -> int:
    with site.pair.connect(region) as conn:
        row = conn.execute("SELECT count(*) FROM dr_commands").fetchone()
    assert row is not None
    return int(row[0])


def _wait_stale(api: TestClient[Any], key: str, above_ms: int) -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        got = api.get(f"/v1/dr/commands/{key}", headers=_read("secondary"))
        if int(got.headers.get("x-ig-stale-read", "0")) > above_ms:
            return got
        time.sleep(0.05)
    pytest.fail(f"staleness never exceeded {above_ms} ms")


def _alerts(api: TestClient[Any]) -> list[str]:
    """LagAlert events in the API's log, oldest first (Fired / Cleared)."""
    entries = api.app.state.conductor.core.ledger.entries(after=0, limit=10_000)
    return [e.topic.rsplit(".", 1)[-1] for e in entries if "LagAlert." in e.topic]


def _wait_alert(api: TestClient[Any], last: str, count: int) -> list[str]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        seen = _alerts(api)
        if len(seen) > count and seen[-1] == last:
            return seen
        time.sleep(0.1)
    pytest.fail(f"the lag alert never went {last}: {_alerts(api)}")


def _read(where: str) -> dict[str, str]:
    return {**bearer("acme", "dr.operate"), "x-ig-read-from": where}


def test_connections_need_a_client_certificate_from_the_pair_ca(
    site: Site, tmp_path: Path
) -> None:
    """TLS with verify-full and the app's cert works; no cert or a rogue CA's fails."""
    pair = site.pair
    with pair.connect("A") as conn:
        row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert row.fetchone() == (True,)
    files = pair.certs("app")
    port = pair.state.ports["A"]
    base = f"host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"
    with pytest.raises(psycopg.OperationalError, match=r"certificate|no pg_hba"):
        psycopg.connect(f"{base} sslmode=verify-full sslrootcert={files.ca}")
    with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
        psycopg.connect(f"{base} sslmode=disable")
    rogue = CertificateAuthority(tmp_path / "rogue").issue(
        "app", common_name="postgres", server=False
    )
    # Same CA name, other key: the server cannot verify the client's chain.
    with pytest.raises(psycopg.OperationalError, match=r"SSL error|certificate"):
        psycopg.connect(
            f"{base} sslmode=verify-full sslrootcert={files.ca} "
            f"sslcert={rogue.cert} sslkey={rogue.key}"
        )
    # A certificate from an unrelated CA (trustme's, a test-only CA library;
    # the pair's own CA is production code, adapters/dr/tls.py) for the right
    # user name is refused too.
    foreign = trustme.CA(organization_name="Not the Conductor DR CA")
    leaf = foreign.issue_cert("127.0.0.1", common_name="postgres")
    cert_path, key_path = tmp_path / "foreign.crt", tmp_path / "foreign.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert_path))
    leaf.private_key_pem.write_to_path(str(key_path))
    key_path.chmod(0o600)  # libpq refuses a key others can read
    # The server's refusal (not a local load error): it does not know the CA.
    with pytest.raises(psycopg.OperationalError, match=r"alert unknown ca"):
        psycopg.connect(
            f"{base} sslmode=verify-full sslrootcert={files.ca} "
            f"sslcert={cert_path} sslkey={key_path}"
        )


def test_standby_streams_over_tls_and_reports_its_role(site: Site) -> None:
    """B is a TLS-streaming standby of A; status shows roles, LSNs and the epoch."""
    with site.pair.connect("A") as conn:
        rows = conn.execute(
            "SELECT r.application_name, s.ssl FROM pg_stat_replication r "
            "JOIN pg_stat_ssl s USING (pid)"
        ).fetchall()
    assert rows == [("dr_standby", True)]
    a, b = region_status(site.pair, "A"), region_status(site.pair, "B")
    assert (a.role, b.role) == ("primary", "standby")
    assert a.epoch == b.epoch == site.pair.state.epoch
    assert a.lsn
    assert b.lsn


def test_sync_write_is_readable_on_the_secondary_at_once(
    site: Site, api: TestClient[Any]
) -> None:
    """remote_apply: an acknowledged write is already replayed on the standby."""
    body = {"key": "sync-1", "payload": {"n": 1}}
    created = api.post("/v1/dr/commands", json=body, headers=_read("primary"))
    assert created.status_code == 201, created.text
    assert created.json()["region"] == "A"
    again = api.post("/v1/dr/commands", json=body, headers=_read("primary"))
    assert again.status_code == 200
    got = api.get("/v1/dr/commands/sync-1", headers=_read("secondary"))
    assert got.status_code == 200
    assert got.headers["x-ig-read-region"] == "B"
    assert got.json()["payloadSha256"] == created.json()["payloadSha256"]


def test_bad_input_is_a_problem_naming_the_field(
    site: Site, api: TestClient[Any]
) -> None:
    """Bad key, unknown field, bad header, reused key: problem+json, nothing written."""
    before = _count(site, "A")
    bad_key = api.post(
        "/v1/dr/commands", json={"key": "a b", "payload": {}}, headers=_read("primary")
    )
    assert bad_key.status_code == 400
    assert bad_key.headers["content-type"].startswith("application/problem+json")
    assert "key" in bad_key.text
    extra = api.post(
        "/v1/dr/commands",
        json={"key": "x", "payload": {}, "evil": 1},
        headers=_read("primary"),
    )
    assert extra.status_code == 400
    header = api.get("/v1/dr/commands/x", headers=_read("everywhere"))
    assert header.status_code == 400
    assert header.json()["errors"][0]["field"] == "x-ig-read-from"
    first = api.post(
        "/v1/dr/commands",
        json={"key": "r1", "payload": {"a": 1}},
        headers=_read("primary"),
    )
    assert first.status_code == 201
    reused = api.post(
        "/v1/dr/commands",
        json={"key": "r1", "payload": {"a": 2}},
        headers=_read("primary"),
    )
    assert reused.status_code == 409
    assert reused.json()["errors"][0]["field"] == "key"
    assert _count(site, "A") == before + 1  # only r1's first write


def test_write_reaching_the_standby_is_a_503_and_writes_nothing(
    site: Site, tmp_path: Path
) -> None:
    """An API whose picture says B is primary: 503 read-only-replica naming A."""
    stale = tmp_path / "stale-pair"
    stale.mkdir()
    (stale / "tls").symlink_to(site.pair.tls)
    state = json.loads((site.pair.root / "dr.json").read_text())
    (stale / "dr.json").write_text(json.dumps({**state, "primary": "B"}))
    settings = Settings(
        var=str(tmp_path / "var"),
        database_url=f"sqlite:///{tmp_path / 'var' / 'conductor.db'}",
        jwt_secret=SECRET,
        dr_root=str(stale),
        checkpoint_interval_s=3600.0,
    )
    before = (_count(site, "A"), _count(site, "B"))
    with TestClient(create_app(settings)) as wrong:
        got = wrong.post(
            "/v1/dr/commands",
            json={"key": "to-standby", "payload": {"x": 1}},
            headers=_read("primary"),
        )
    assert got.status_code == 503
    assert got.headers["content-type"].startswith("application/problem+json")
    assert got.headers["retry-after"] == "1"
    problem = got.json()
    assert problem["type"] == "/problems/read-only-replica"
    assert problem["region"] == "B"
    assert problem["primary"] == "A"
    assert (_count(site, "A"), _count(site, "B")) == before


def test_stale_header_grows_ttl_falls_back_and_link_heals(
    site: Site, api: TestClient[Any]
) -> None:
    """Cut link: x-ig-stale-read grows, past the TTL reads come from A, the alert
    fires and a sync write waits; heal: it is acknowledged, the header and the
    alert clear."""
    api.post(
        "/v1/dr/commands",
        json={"key": "chaos-1", "payload": {}},
        headers=_read("primary"),
    )
    alerts = len(_alerts(api))
    site.relay.cut()
    pending: list[Any] = []
    writer = threading.Thread(
        target=lambda: pending.append(
            api.post(
                "/v1/dr/commands",
                json={"key": "during-cut", "payload": {}},
                headers=_read("primary"),
            )
        )
    )
    try:
        writer.start()  # sync: its commit waits for the standby
        first = _wait_stale(api, "chaos-1", 0)
        time.sleep(0.4)
        second = _wait_stale(api, "chaos-1", int(first.headers["x-ig-stale-read"]))
        assert second.headers["x-ig-read-region"] == "B"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            fallback = api.get("/v1/dr/commands/chaos-1", headers=_read("secondary"))
            if fallback.headers["x-ig-read-region"] == "A":
                break
            time.sleep(0.1)
        assert fallback.status_code == 200
        assert fallback.headers["x-ig-read-region"] == "A"
        assert "x-ig-stale-read" not in fallback.headers
        metrics = api.get("/metrics").text
        assert 'conductor_dr_replica_lag_ms{region="B"}' in metrics
        assert "conductor_dr_stale_reads_total" in metrics
        fired = _wait_alert(api, "Fired", alerts)
        assert pending == []  # not acknowledged while the standby is cut off
    finally:
        site.relay.restore()
    site.pair.wait_streaming()
    writer.join(timeout=30)
    assert pending[0].status_code == 201  # acknowledged once B had applied it
    with site.pair.connect("B") as conn:
        row = conn.execute("SELECT count(*) FROM dr_commands WHERE key = 'during-cut'")
        assert row.fetchone() == (1,)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        healed = api.get("/v1/dr/commands/chaos-1", headers=_read("secondary"))
        if healed.headers["x-ig-read-region"] == "B" and (
            "x-ig-stale-read" not in healed.headers
        ):
            break
        time.sleep(0.1)
    assert healed.headers["x-ig-read-region"] == "B"
    assert "x-ig-stale-read" not in healed.headers
    assert _wait_alert(api, "Cleared", len(fired))[-2:] == ["Fired", "Cleared"]


def test_primary_down_and_standby_too_stale_is_a_503_with_retry_after(
    site: Site, api: TestClient[Any]
) -> None:
    """A killed, B's staleness past the TTL: 503 problem with Retry-After and lag."""
    primary = site.pair.cluster("A")
    primary.kill()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            got = api.get("/v1/dr/commands/chaos-1", headers=_read("secondary"))
            if got.status_code == 503:
                break
            time.sleep(0.1)
        assert got.status_code == 503
        assert got.headers["retry-after"] == "1"
        problem = got.json()
        assert problem["type"] == "/problems/region-unavailable"
        assert problem["lagMs"] > TTL_MS
        write = api.post(
            "/v1/dr/commands",
            json={"key": "while-down", "payload": {}},
            headers=_read("primary"),
        )
        assert write.status_code == 503
        assert write.headers["content-type"].startswith("application/problem+json")
    finally:
        primary.start()
        site.pair.wait_streaming()
    assert _count(site, "B") == _count(site, "A")


def test_standby_killed_reads_fall_back_to_the_primary(
    site: Site, api: TestClient[Any]
) -> None:
    """B down: secondary and nearest reads are answered by A, without a header."""
    standby = site.pair.cluster("B")
    standby.kill()
    try:
        for where in ("secondary", "nearest"):
            got = api.get("/v1/dr/commands/chaos-1", headers=_read(where))
            assert got.status_code == 200, got.text
            assert got.headers["x-ig-read-region"] == "A"
            assert "x-ig-stale-read" not in got.headers
    finally:
        standby.start()
        site.pair.wait_streaming()


def test_dr_routes_without_a_pair_are_a_404_problem(tmp_path: Path) -> None:
    """No CONDUCTOR_DR_ROOT: /v1/dr answers 404 problem+json, not a 500."""
    settings = Settings(
        var=str(tmp_path / "var"),
        database_url=f"sqlite:///{tmp_path / 'var' / 'conductor.db'}",
        jwt_secret=SECRET,
        checkpoint_interval_s=3600.0,
    )
    with TestClient(create_app(settings)) as plain:
        got = plain.get("/v1/dr/commands/x", headers=_read("nearest"))
    assert got.status_code == 404
    assert "CONDUCTOR_DR_ROOT" in got.json()["detail"]
