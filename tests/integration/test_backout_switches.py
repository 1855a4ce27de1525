"""The seed's backout switches: audited, operator-only, honoured everywhere.

Runbook "Backout": disable secondary reads; turn off the ER assist hook;
relax export gates to manual review; disable traffic shaping. Each is an event
saying who set it and why, set by `conductor switch ...` or PUT /v1/switches,
shown in /readyz and /metrics, and honoured by every process within ~1 s.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from adapters.audit.proof_check import verify_bundle
from tests.conftest import bearer
from tests.integration.server import Server, cli
from tests.integration.test_exports import (
    bundle,
    keys_of,
    manifest_of,
    register,
    request,
    settle,
)
from tests.integration.test_policy_sandbox import publish

if TYPE_CHECKING:
    from pathlib import Path

    from litestar.testing import TestClient

    from api.settings import Settings

pytestmark = pytest.mark.integration

OPERATOR = ("platform.operate",)


def switch(
    client: TestClient[Any], name: str, *, engaged: bool, reason: str = "drill"
) -> Any:
    return client.put(
        f"/v1/switches/{name}",
        json={"engaged": engaged, "reason": reason},
        headers=bearer("ops", *OPERATOR),
    )


def reviewer(tenant: str = "acme", sub: str = "bob") -> dict[str, str]:
    """A second person in the tenant holding export.approve."""
    return bearer(tenant, "export.approve", "export.request", sub=sub)


def review(
    client: TestClient[Any],
    export_id: str,
    *,
    approve: bool,
    reason: str,
    headers: dict[str, str] | None = None,
) -> Any:
    return client.post(
        f"/v1/exports/{export_id}/review",
        json={"approve": approve, "reason": reason},
        headers=headers or reviewer(),
    )


def test_setting_a_switch_is_operator_only_and_recorded_with_who_and_why(
    client: TestClient[Any],
) -> None:
    """A tenant's token (even with every tenant scope) gets 403; the operator's
    change is a Switchboard event naming the operator and the reason."""
    from api.auth import TENANT_SCOPES  # noqa: PLC0415

    refused = client.put(
        "/v1/switches/manual-export-review",
        json={"engaged": True, "reason": "x"},
        headers=bearer("acme", *sorted(TENANT_SCOPES)),
    )
    assert refused.status_code == 403, refused.text
    done = switch(client, "manual-export-review", engaged=True, reason="gate bug #12")
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["engaged"] is True
    assert body["by"] == "cli"
    assert body["reason"] == "gate bug #12"
    entry = client.app.state.conductor.core.ledger.entries(
        after=body["position"] - 1, limit=1
    )[0]
    assert entry.topic.endswith("Switchboard.Engaged")
    assert json.loads(entry.state)["reason"] == "gate bug #12"
    again = switch(client, "manual-export-review", engaged=True)
    assert again.json()["position"] is None  # no change, no event
    unknown = switch(client, "disable-everything", engaged=True)
    assert unknown.status_code == 404
    listed = client.get("/v1/switches", headers=bearer("ops", *OPERATOR)).json()
    names = [s["name"] for s in listed["items"]]
    assert names == [
        "disable-secondary-reads",
        "disable-er-assist",
        "manual-export-review",
        "disable-traffic-shaping",
    ]


def test_readyz_and_metrics_show_the_switches(client: TestClient[Any]) -> None:
    assert switch(client, "disable-er-assist", engaged=True).status_code == 200
    ready = client.get("/readyz").json()["checks"]["switches"]
    assert ready["disable-er-assist"] is True
    assert ready["manual-export-review"] is False
    scraped = client.get("/metrics").text
    assert 'conductor_backout_switch{switch="disable-er-assist"} 1.0' in scraped
    assert 'conductor_backout_switch{switch="manual-export-review"} 0.0' in scraped


def test_manual_review_holds_an_allowed_export_until_someone_else_approves(
    client: TestClient[Any], settings: Settings
) -> None:
    """202 pending_review; the requester cannot approve it; another holder of
    export.approve does, with a reason; the export runs and its proof names
    the approval among its authorizing events."""
    assert switch(client, "manual-export-review", engaged=True).status_code == 200
    dataset_id = register(client, settings)
    held = request(client, dataset_id)
    assert held.status_code == 202, held.text
    export_id = held.json()["id"]
    assert held.json()["status"] == "pending_review"
    time.sleep(0.3)
    assert not bundle(settings, export_id).exists()
    own = review(
        client, export_id, approve=True, reason="mine", headers=reviewer(sub="cli")
    )
    assert own.status_code == 403, own.text
    assert own.json()["type"] == "/problems/self-review"
    approved = review(
        client, export_id, approve=True, reason="checked the purpose with legal"
    )
    assert approved.status_code == 200, approved.text
    final = settle(client, export_id)
    assert final["status"] == "proven", final
    assert final["decision"]["review"] == {
        "approved": True,
        "reviewer": "bob",
        "reason": "checked the purpose with legal",
    }
    manifest = manifest_of(bundle(settings, export_id))
    assert "review" in {e["role"] for e in manifest["authorizingEvents"]}
    assert manifest["decision"]["review"]["reviewer"] == "bob"
    assert verify_bundle(bundle(settings, export_id), keys_of(client)) == []


def test_a_rejected_export_never_runs(
    client: TestClient[Any], settings: Settings
) -> None:
    assert switch(client, "manual-export-review", engaged=True).status_code == 200
    export_id = request(client, register(client, settings)).json()["id"]
    rejected = review(
        client, export_id, approve=False, reason="no contract for this purpose"
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    twice = review(client, export_id, approve=True, reason="changed my mind")
    assert twice.status_code == 409
    assert not bundle(settings, export_id).exists()


def test_under_review_the_floor_still_denies_and_a_tenant_denial_is_reviewable(
    client: TestClient[Any], settings: Settings
) -> None:
    """Floor denials are never reviewable (403 at once); a denial by the
    tenant's own gate becomes a pending review a person may overrule."""
    source = (
        "package conductor.export\nimport rego.v1\n"
        'decision := {"allow": false, "deny": ["tenant_gate_broken"]}\n'
    )
    assert publish(client, source).status_code == 201
    assert switch(client, "manual-export-review", engaged=True).status_code == 200
    dataset_id = register(client, settings)
    floor = request(client, dataset_id, preset="none")
    assert floor.status_code == 403, floor.text
    assert floor.json()["deniedBy"]["platform"] == ["dlp_preset_none"]
    held = request(client, dataset_id)
    assert held.status_code == 202, held.text
    assert held.json()["decision"]["deniedBy"]["tenant"] == ["tenant_gate_broken"]
    overruled = review(
        client, held.json()["id"], approve=True, reason="the gate is broken, see #12"
    )
    assert overruled.status_code == 200, overruled.text
    assert settle(client, held.json()["id"])["status"] == "proven"


def test_another_tenants_export_cannot_be_reviewed(
    client: TestClient[Any], settings: Settings
) -> None:
    assert switch(client, "manual-export-review", engaged=True).status_code == 200
    export_id = request(client, register(client, settings)).json()["id"]
    foreign = review(
        client,
        export_id,
        approve=True,
        reason="mine now",
        headers=reviewer(tenant="globex"),
    )
    assert foreign.status_code == 404, foreign.text


def test_disabling_shaping_lets_a_shaped_tenant_through(
    client: TestClient[Any],
) -> None:
    """A tenant held to 1 request/s gets 429s; with the switch on it does not."""
    services = client.app.state.conductor
    services.autopilot.shaping.store.engage(
        "acme", rate=0.01, burst=1.0, reason="test: held", now=time.time()
    )
    statuses = [
        client.get("/v1/datasets", headers=bearer("acme")).status_code for _ in range(5)
    ]
    assert 429 in statuses
    assert switch(client, "disable-traffic-shaping", engaged=True).status_code == 200
    statuses = [
        client.get("/v1/datasets", headers=bearer("acme")).status_code for _ in range(5)
    ]
    assert statuses == [200] * 5


def test_a_switch_set_by_the_cli_reaches_a_running_server_within_two_seconds(
    settings: Settings, tmp_path: Path
) -> None:
    """Another process (the CLI) engages; the server's /readyz shows it and its
    exports are held for review within 2 s, without a restart."""
    with (tmp_path / "server.log").open("w") as log:
        server = Server(settings.database_url, tmp_path / "srv", log)
        try:
            done = cli(
                settings.database_url,
                tmp_path / "srv",
                "switch",
                "on",
                "manual-export-review",
                "--reason",
                "incident 7",
                "--by",
                "alice",
            )
            assert done.returncode == 0, done.stderr
            set_at = time.monotonic()
            seen = None
            while time.monotonic() - set_at < 2.0:
                checks = httpx.get(server.base + "/readyz").json()["checks"]
                if checks["switches"]["manual-export-review"]:
                    seen = time.monotonic() - set_at
                    break
                time.sleep(0.05)
            assert seen is not None, "the server did not honour the switch in 2 s"
            listed = cli(settings.database_url, tmp_path / "srv", "switch", "list")
            assert "manual-export-review       ENGAGED" in listed.stdout
            assert "by alice: incident 7" in listed.stdout
        finally:
            server.stop()


def test_with_er_assist_off_resolve_uses_the_blocking_rules_alone(
    client: TestClient[Any],
) -> None:
    """The pair only ANN can propose is gone, and the Resolution says k = 0;
    released, the same batch finds it again."""
    from tests.integration.test_er_api import BATCH, resolve  # noqa: PLC0415

    assert switch(client, "disable-er-assist", engaged=True).status_code == 200
    off = resolve(client, BATCH)
    assert off.status_code == 200, off.text
    pairs = {(p["left"], p["right"]) for p in off.json()["pairs"]}
    assert ("r3", "r4") not in pairs
    assert all(p["via"] == "blocking" for p in off.json()["pairs"])
    ledger = client.app.state.conductor.core.ledger
    requested = [
        json.loads(e.state)
        for e in ledger.entries(after=0, limit=1000)
        if e.topic.endswith("Resolution.Requested")
    ]
    assert requested[-1]["k"] == 0
    assert requested[-1]["ann_pairs"] == 0
    assert switch(client, "disable-er-assist", engaged=False).status_code == 200
    on = resolve(client, BATCH)
    assert ("r3", "r4") in {(p["left"], p["right"]) for p in on.json()["pairs"]}
