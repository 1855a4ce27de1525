"""The platform floor: the seed's rules judge every export before the tenant's gate.

A tenant's own policy can add denials, never remove one: a policy that allows
everything still cannot ship raw PII across a residency boundary. Both
digests are recorded, named in the proof and reproduced by `audit replay`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from adapters.audit.proof_check import verify_bundle
from application.exports.gate import default_policy_sources, platform_policy_sources
from domain.exports.policy import policy_digest
from tests.conftest import bearer
from tests.integration.server import cli
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

ALLOW_ALL = (
    "package conductor.export\nimport rego.v1\n"
    'decision := {"allow": true, "deny": []}\n'
)
PLATFORM = policy_digest(platform_policy_sources())


def test_a_tenant_policy_that_allows_everything_cannot_lift_the_floor(
    client: TestClient[Any], settings: Settings
) -> None:
    """The reported case: preset none and a residency violation, allowed by the
    tenant's own policy, are denied by the floor; no file is written."""
    assert publish(client, ALLOW_ALL).status_code == 201
    dataset_id = register(client, settings)
    response = request(client, dataset_id, preset="none", destinationRegion="US")
    assert response.status_code == 403, response.text
    problem = response.json()
    assert problem["reasons"] == ["dlp_preset_none", "residency_violation"]
    assert problem["deniedBy"] == {
        "platform": ["dlp_preset_none", "residency_violation"],
        "tenant": [],
    }
    assert problem["platformPolicyDigest"] == PLATFORM
    assert problem["policyDigest"] == policy_digest([("gate.rego", ALLOW_ALL)])
    assert not bundle(settings, problem["exportId"]).exists()
    recorded = client.get(f"/v1/exports/{problem['exportId']}", headers=bearer())
    decision = recorded.json()["decision"]
    assert decision["deniedBy"]["platform"] == problem["reasons"]
    assert decision["platformPolicyDigest"] == PLATFORM


@pytest.mark.parametrize(
    ("dataset_over", "request_over", "reason"),
    [
        ({"license": "Embargoed"}, {}, "license_embargoed"),
        ({}, {"purpose": "marketing"}, "purpose_not_permitted"),
        ({}, {"preset": "none"}, "dlp_preset_none"),
    ],
)
def test_each_seed_rule_is_the_floors_whatever_the_tenant_publishes(
    client: TestClient[Any],
    settings: Settings,
    dataset_over: dict[str, Any],
    request_over: dict[str, Any],
    reason: str,
) -> None:
    """Embargoed, purpose, preset none: platform denials under an allow-all gate."""
    assert publish(client, ALLOW_ALL).status_code == 201
    dataset_id = register(client, settings, **dataset_over)
    problem = request(client, dataset_id, **request_over).json()
    assert problem["deniedBy"] == {"platform": [reason], "tenant": []}


def test_a_tenant_policy_adds_denials_named_as_the_tenants(
    client: TestClient[Any], settings: Settings
) -> None:
    """Both policies deny: each reason is listed under the policy that gave it."""
    source = (
        "package conductor.export\nimport rego.v1\n"
        'deny contains "no_uk" if input.dataset.region == "UK"\n'
        'deny contains "no_marketing" if input.request.purpose == "marketing"\n'
        "default allow := false\nallow if count(deny) == 0\n"
        'decision := {"allow": allow, "deny": sort(deny)}\n'
    )
    assert publish(client, source).status_code == 201
    dataset_id = register(client, settings, region="UK")
    problem = request(client, dataset_id, purpose="marketing").json()
    assert problem["deniedBy"] == {
        "platform": ["purpose_not_permitted"],
        "tenant": ["no_marketing", "no_uk"],
    }
    assert problem["reasons"] == ["no_marketing", "no_uk", "purpose_not_permitted"]


def test_the_proof_names_both_policies_and_verifies(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    """The manifest carries both digests and the floor's Published event among
    its authorizing events; offline verification and replay both pass."""
    dataset_id = register(client, settings)
    response = request(client, dataset_id)
    assert response.status_code == 201, response.text
    export_id = response.json()["id"]
    assert settle(client, export_id)["status"] == "proven"
    directory = bundle(settings, export_id)
    manifest = manifest_of(directory)
    assert manifest["decision"]["platformPolicyDigest"] == PLATFORM
    assert manifest["decision"]["policyDigest"] == policy_digest(
        default_policy_sources()
    )
    roles = {e["role"] for e in manifest["authorizingEvents"]}
    assert "platform-policy" in roles
    assert verify_bundle(directory, keys_of(client)) == []
    log = tmp_path / "log.jsonl"
    exported = cli(
        settings.database_url, tmp_path, "audit", "export-log", "--out", str(log)
    )
    assert exported.returncode == 0, exported.stderr
    replayed = cli(
        settings.database_url, tmp_path, "audit", "replay", "--log", str(log), "--all"
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "0 mismatch(es)" in replayed.stdout + replayed.stderr


def test_a_tenant_cannot_publish_the_floor_or_read_anothers_policy(
    client: TestClient[Any],
) -> None:
    """The floor's sources are reserved; the shipped policies are readable by
    every tenant; a policy only another tenant bound is a 404."""
    ((name, source),) = platform_policy_sources()
    reserved = client.post(
        "/v1/policies",
        json={"name": "export", "modules": [{"name": name, "source": source}]},
        headers=bearer("acme", "export.approve"),
    )
    assert reserved.status_code == 422, reserved.text
    assert reserved.json()["errors"][0]["rule"] == "reserved"
    secret = ALLOW_ALL + "# globex's own words\n"
    published = publish(client, secret, tenant="globex")
    assert published.status_code == 201, published.text
    digest = published.json()["digest"]
    foreign = client.get(f"/v1/policies/{digest}", headers=bearer("acme"))
    assert foreign.status_code == 404, foreign.text
    assert "globex" not in foreign.text
    assert (
        client.get(f"/v1/policies/{digest}", headers=bearer("globex")).status_code
        == 200
    )
    floor = client.get(f"/v1/policies/{PLATFORM}", headers=bearer("acme"))
    assert floor.status_code == 200, floor.text
    assert floor.json()["name"] == "platform-export"
