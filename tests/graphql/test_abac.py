"""@auth(abac): each operation x scope present/absent x same/other tenant x
attribute claim in/out, through real HTTP on SQLite and PostgreSQL.

Every answer is also searched for the other tenant's ids and names: none may
appear, whatever the combination.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest

from api.auth import issue_token
from api.graphql.schema import build_schema
from tests.conftest import SECRET, bearer
from tests.graphql.support import codes, exportable, gql, log_head, text_of

if TYPE_CHECKING:
    from litestar.testing import TestClient

    from api.settings import Settings

pytestmark = pytest.mark.integration

SCOPES = ("catalog.read", "catalog.write", "export.request", "export.approve")
COMBOS = list(itertools.product((True, False), ("acme", "globex"), (True, False)))
"""(scope present, tenant of the token, attribute claim covers the object)."""
ALLOWED = (True, "acme", True)


def token(tenant: str, scopes: tuple[str, ...], **claims: list[str]) -> dict[str, str]:
    encoded = issue_token(
        SECRET, tenant=tenant, scopes=scopes, ttl=timedelta(minutes=10), **claims
    )
    return {"Authorization": f"Bearer {encoded}"}


def headers(scope: str, present: bool, tenant: str, **claims: list[str]) -> Any:
    scopes = SCOPES if present else tuple(s for s in SCOPES if s != scope)
    return token(tenant, scopes, **claims)


@pytest.fixture
def world(client: TestClient[Any], settings: Settings) -> dict[str, str]:
    """acme: an EU and a US dataset (exportable); globex: one of its own."""
    ids = {
        "eu": exportable(client, settings, "acme-eu-orders", region="EU"),
        "us": exportable(client, settings, "acme-us-orders", region="US"),
        "globex": exportable(client, settings, "globex-orders", "globex"),
    }
    head = log_head(client)["position"]
    ids["head"] = str(head)
    return ids


def assert_no_leak(
    answer: dict[str, Any], world: dict[str, str], tenant: str, sent: str = ""
) -> None:
    """No id or name of a tenant other than the token's in the answer (but
    the id the caller sent, which a not-found error repeats)."""
    text = text_of(answer).replace(sent, "<sent>") if sent else text_of(answer)
    foreign = (
        [world["globex"], "globex-orders"]
        if tenant == "acme"
        else [world["eu"], world["us"], "acme-eu-orders", "acme-us-orders"]
    )
    for marker in foreign:
        assert marker not in text, (marker, answer)


def test_datasets_search(client: TestClient[Any], world: dict[str, str]) -> None:
    """Scope needed; only the token's tenant; a region claim hides other regions."""
    query = 'query($p: Int) { datasets(q: "orders", minPosition: $p) { id region } }'
    for present, tenant, covered in COMBOS:
        claim = ["EU"] if covered else ["UK"]
        answer = gql(
            client,
            query,
            {"p": int(world["head"])},
            headers("catalog.read", present, tenant, regions=claim),
        )
        assert_no_leak(answer, world, tenant)
        if not present:
            assert codes(answer) == ["forbidden"]
            continue
        found = {d["id"] for d in answer["data"]["datasets"]}
        assert world["us"] not in found  # outside either claim
        if tenant == "acme":
            assert (world["eu"] in found) is covered
        else:
            assert found == ({world["globex"]} if covered else set())


def test_dataset_by_id(client: TestClient[Any], world: dict[str, str]) -> None:
    """Another tenant's id, or an object outside the claim: null, like a miss."""
    query = "query($id: ID!, $p: Int) { dataset(id: $id, minPosition: $p) { name } }"
    for present, tenant, covered in COMBOS:
        answer = gql(
            client,
            query,
            {"id": world["eu"], "p": int(world["head"])},
            headers(
                "catalog.read", present, tenant, regions=["EU"] if covered else ["US"]
            ),
        )
        assert_no_leak(answer, world, tenant)
        if not present:
            assert codes(answer) == ["forbidden"]
        elif tenant == "acme" and covered:
            assert answer["data"]["dataset"] == {"name": "acme-eu-orders"}
        else:
            assert answer["data"]["dataset"] is None


def test_register_dataset(client: TestClient[Any], world: dict[str, str]) -> None:
    """Writing needs the scope and a region within the claim; nothing is
    written otherwise (the log head stays)."""
    mutation = "mutation($input: DatasetInput!) { registerDataset(input: $input) }"
    for n, (present, tenant, covered) in enumerate(COMBOS):
        body = {
            "name": f"new-{n}",
            "license": "CC-BY-4.0",
            "purpose": ["investigation"],
            "retention": "P1Y",
            "region": "EU",
            "contractVersion": "v1",
        }
        before = log_head(client)
        answer = gql(
            client,
            mutation,
            {"input": body},
            headers(
                "catalog.write", present, tenant, regions=["EU"] if covered else ["UK"]
            ),
        )
        assert_no_leak(answer, world, tenant)
        if present and covered:
            assert answer["data"] == {"registerDataset": True}
            assert log_head(client)["position"] > before["position"]
            continue
        assert codes(answer) == ["forbidden"]
        if present:
            assert answer["errors"][0]["extensions"]["field"] == "input.region"
        assert log_head(client) == before


def test_request_governed_export(
    client: TestClient[Any], world: dict[str, str]
) -> None:
    """The purpose must be within the claim; another tenant's dataset is
    not found; a refusal writes nothing."""
    mutation = (
        "mutation($d: ID!) { requestGovernedExport(datasetId: $d, "
        'preset: "tokenize_strict", purpose: "investigation") }'
    )
    # The allowed one last: its run appends events in the background.
    for present, tenant, covered in sorted(COMBOS, key=lambda c: c == ALLOWED):
        claim = ["investigation"] if covered else ["fraud"]
        before = log_head(client)
        answer = gql(
            client,
            mutation,
            {"d": world["eu"]},
            headers("export.request", present, tenant, purposes=claim),
        )
        assert_no_leak(answer, world, tenant, sent=world["eu"])
        if not present:
            assert codes(answer) == ["forbidden"]
        elif not covered:
            assert codes(answer) == ["forbidden"]
            assert answer["errors"][0]["extensions"]["field"] == "purpose"
        elif tenant == "globex":
            assert codes(answer) == ["not-found"]
        else:
            assert answer["data"]["requestGovernedExport"]
            assert log_head(client)["position"] > before["position"]
            continue
        assert log_head(client) == before


def test_exports_listing_and_a_datasets_exports(
    client: TestClient[Any], world: dict[str, str]
) -> None:
    """An export is seen only by its tenant and by tokens whose purposes
    cover it; the same rule holds on Dataset.exports."""
    made = gql(
        client,
        "mutation($d: ID!) { requestGovernedExport(datasetId: $d, "
        'preset: "tokenize_strict", purpose: "investigation") }',
        {"d": world["eu"]},
        bearer("acme"),
    )
    export_id = made["data"]["requestGovernedExport"]
    position = made["extensions"]["position"]
    query = (
        "query($p: Int, $id: ID!) { exports(minPosition: $p) { items { id } } "
        "export(id: $id, minPosition: $p) { id purpose } }"
    )
    for present, tenant, covered in COMBOS:
        claim = ["investigation"] if covered else ["fraud"]
        answer = gql(
            client,
            query,
            {"p": position, "id": export_id},
            headers("export.request", present, tenant, purposes=claim),
        )
        assert_no_leak(answer, world, tenant)
        if not present:
            assert codes(answer) == ["forbidden", "forbidden"]
            continue
        ids = [e["id"] for e in answer["data"]["exports"]["items"]]
        seen = tenant == "acme" and covered
        assert ids == ([export_id] if seen else [])
        assert (answer["data"]["export"] is not None) is seen
    denied = gql(  # recorded all the same: an export row for purpose marketing
        client,
        "mutation($d: ID!) { requestGovernedExport(datasetId: $d, "
        'preset: "tokenize_strict", purpose: "marketing") }',
        {"d": world["eu"]},
        bearer("acme"),
    )
    nested_query = (
        "query($id: ID!) { dataset(id: $id) { exports { id purpose } } "
        "exports { items { purpose } } }"
    )
    # x-ig-min-position: every read model read in the request waits for it.
    wait = {"x-ig-min-position": str(denied["errors"][0]["extensions"]["position"])}
    variables = {"id": world["eu"]}
    everything = gql(client, nested_query, variables, {**bearer("acme"), **wait})
    assert len(everything["data"]["dataset"]["exports"]) == 2
    claimed = token("acme", SCOPES, purposes=["investigation"])
    nested = gql(client, nested_query, variables, {**claimed, **wait})
    assert nested["data"]["dataset"]["exports"] == [
        {"id": export_id, "purpose": "investigation"}
    ]
    assert nested["data"]["exports"]["items"] == [{"purpose": "investigation"}]


def test_a_region_filter_outside_the_claim_is_refused_and_none_is_filled(
    client: TestClient[Any], world: dict[str, str]
) -> None:
    """Asking for US with an EU token is forbidden; with several regions in
    the claim the filter must be given; one region is filled in (so facets
    and totals never count what the token may not see)."""
    eu = token("acme", SCOPES, regions=["EU"])
    refused = gql(client, '{ datasets(region: "US") { id } }', headers=eu)
    assert codes(refused) == ["forbidden"]
    assert refused["errors"][0]["extensions"]["field"] == "region"
    two = token("acme", SCOPES, regions=["EU", "UK"])
    unsaid = gql(client, "{ datasetsConnection { totalCount } }", headers=two)
    assert codes(unsaid) == ["bad-request"]
    assert unsaid["errors"][0]["extensions"]["field"] == "filter.region"
    filled = gql(
        client,
        "query($p: Int) { datasetsConnection(minPosition: $p) "
        "{ totalCount facets { name values { value count } } } }",
        {"p": int(world["head"])},
        eu,
    )["data"]["datasetsConnection"]
    assert filled["totalCount"] == 1
    regions = {f["name"]: f["values"] for f in filled["facets"]}["region"]
    assert regions == [{"value": "EU", "count": 1}]


def test_no_token_is_unauthorized_and_a_bad_token_is_401(
    client: TestClient[Any],
) -> None:
    """Without a token every guarded field is unauthorized; a forged token
    gets REST's 401 problem."""
    answer = client.post("/graphql", json={"query": "{ datasets { id } }"})
    assert answer.json()["errors"][0]["extensions"]["code"] == "unauthorized"
    forged = client.post(
        "/graphql",
        json={"query": "{ datasets { id } }"},
        headers={"Authorization": "Bearer a.b.c"},
    )
    assert forged.status_code == 401
    assert forged.headers["content-type"].startswith("application/problem+json")


def test_every_auth_directive_is_enforced(settings: Settings) -> None:
    """The schema carries @auth on every root field and lineage field."""
    schema = build_schema(settings)
    printed = str(schema)
    for field in ("datasets(", "registerDataset(", "requestGovernedExport("):
        line = next(x for x in printed.splitlines() if x.strip().startswith(field))
        assert "@auth(abac: " in line
