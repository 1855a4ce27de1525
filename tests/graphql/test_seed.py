"""The seed's three operations, verbatim, through real HTTP on SQLite and PostgreSQL;
the committed SDL; the GraphiQL page with no CDN."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from api.graphql.schema import printed_sdl
from tests.conftest import REPO_ROOT
from tests.graphql.support import ACME, codes, exportable, gql, log_head

if TYPE_CHECKING:
    from litestar.testing import TestClient

    from api.settings import Settings

pytestmark = pytest.mark.integration

SEED_DATASETS = """
query Datasets($q: String, $license: String, $purpose: String, $region: String,
               $after: String) {
  datasets(q: $q, license: $license, purpose: $purpose, region: $region,
           after: $after) {
    id
    name
    license
    purpose
    retention
    region
    contractVersion
  }
}
"""
SEED_REGISTER = """
mutation Register($input: DatasetInput!) {
  registerDataset(input: $input)
}
"""
SEED_EXPORT = """
mutation Export($datasetId: ID!, $preset: String!, $purpose: String!) {
  requestGovernedExport(datasetId: $datasetId, preset: $preset, purpose: $purpose)
}
"""
INPUT = {
    "name": "orders",
    "license": "CC-BY-4.0",
    "purpose": ["investigation", "fraud"],
    "retention": "P1Y",
    "region": "EU",
    "contractVersion": "v3",
}


class TestSeedOperations:
    def test_register_then_search_with_every_seed_argument(
        self, client: TestClient[Any]
    ) -> None:
        """registerDataset answers true; datasets finds it by q, license, purpose
        and region, with the seed's fields exactly as named."""
        registered = gql(client, SEED_REGISTER, {"input": INPUT})
        assert registered["data"] == {"registerDataset": True}
        position = registered["extensions"]["position"]
        found = gql(
            client,
            SEED_DATASETS.replace("datasets(", f"datasets(minPosition: {position}, "),
            {"q": "orders", "license": "CC-BY-4.0", "purpose": "fraud", "region": "EU"},
        )
        [dataset] = found["data"]["datasets"]
        assert {k: v for k, v in dataset.items() if k != "id"} == INPUT
        assert found["extensions"]["readModels"]["catalog"]["position"] >= position
        assert found["extensions"]["staleRead"] is False
        other = gql(client, SEED_DATASETS, {"region": "US"})
        assert other["data"]["datasets"] == []

    def test_after_pages_through_the_search(self, client: TestClient[Any]) -> None:
        """``after`` takes the cursor the connection hands out: no repeats."""
        for n in range(5):
            gql(client, SEED_REGISTER, {"input": {**INPUT, "name": f"ds-{n}"}})
        head = log_head(client)["position"]
        first = gql(
            client,
            "query($p: Int) { datasetsConnection(first: 3, minPosition: $p) "
            "{ edges { node { name } } pageInfo { hasNextPage endCursor } "
            "totalCount } }",
            {"p": head},
        )["data"]["datasetsConnection"]
        assert first["totalCount"] == 5
        assert first["pageInfo"]["hasNextPage"] is True
        rest = gql(client, SEED_DATASETS, {"after": first["pageInfo"]["endCursor"]})
        names = [e["node"]["name"] for e in first["edges"]]
        names += [d["name"] for d in rest["data"]["datasets"]]
        assert sorted(names) == [f"ds-{n}" for n in range(5)]

    def test_request_governed_export_answers_the_export_id(
        self, client: TestClient[Any], settings: Settings
    ) -> None:
        """An allowed export: its id, the same export REST then shows."""
        dataset_id = exportable(client, settings, "customers")
        answer = gql(
            client,
            SEED_EXPORT,
            {
                "datasetId": dataset_id,
                "preset": "tokenize_strict",
                "purpose": "investigation",
            },
        )
        assert "errors" not in answer, answer
        export_id = answer["data"]["requestGovernedExport"]
        shown = client.get(
            f"/v1/exports/{export_id}", headers={"Authorization": _auth()}
        ).json()
        assert shown["datasetId"] == dataset_id
        assert shown["destinationRegion"] == "EU"  # the dataset's own region
        assert shown["decision"]["allow"] is True

    def test_a_denied_export_is_export_denied_with_its_reasons(
        self, client: TestClient[Any], settings: Settings
    ) -> None:
        """The REST problem in extensions: code, reasons, who denied; recorded."""
        dataset_id = exportable(client, settings, "customers")
        before = log_head(client)
        answer = gql(
            client,
            SEED_EXPORT,
            {
                "datasetId": dataset_id,
                "preset": "tokenize_strict",
                "purpose": "marketing",
            },
        )
        assert answer["data"] is None
        [error] = answer["errors"]
        extensions = error["extensions"]
        assert extensions["code"] == "export-denied"
        assert extensions["reasons"] == ["purpose_not_permitted"]
        assert extensions["deniedBy"]["tenant"] + extensions["deniedBy"][
            "platform"
        ] == ["purpose_not_permitted"]
        assert extensions["inputDigest"]
        assert log_head(client)["events"] > before["events"]  # recorded
        listed = gql(
            client,
            "query($id: ID!, $p: Int) { export(id: $id, minPosition: $p) "
            "{ status decision { allow reasons } } }",
            {"id": extensions["exportId"], "p": extensions["position"]},
        )
        assert listed["data"]["export"] == {
            "status": "denied",
            "decision": {"allow": False, "reasons": ["purpose_not_permitted"]},
        }


def _auth() -> str:
    from tests.graphql.support import ACME  # noqa: PLC0415

    return ACME["Authorization"]


class TestErrors:
    def test_not_found_precondition_and_validation_carry_problem_codes(
        self, client: TestClient[Any]
    ) -> None:
        """amendDataset: stale version -> precondition-failed; unknown id ->
        not-found; a domain rule -> validation naming the field."""
        registered = gql(
            client,
            "mutation($input: DatasetInput!) { registerDatasetAccepted(input: $input) "
            "{ id version position } }",
            {"input": INPUT},
        )["data"]["registerDatasetAccepted"]
        amend = (
            "mutation($id: ID!, $v: Int!, $p: DatasetPatch!) "
            "{ amendDataset(id: $id, expectedVersion: $v, input: $p) { version } }"
        )
        stale = gql(client, amend, {"id": registered["id"], "v": 7, "p": {"tags": []}})
        assert codes(stale) == ["precondition-failed"]
        assert stale["errors"][0]["extensions"]["currentVersion"] == 1
        missing = gql(
            client,
            amend,
            {"id": "00000000-0000-0000-0000-000000000000", "v": 1, "p": {}},
        )
        assert codes(missing) == ["not-found"]
        bad = gql(
            client, amend, {"id": registered["id"], "v": 1, "p": {"region": "XX"}}
        )
        assert codes(bad) == ["validation"]
        assert bad["errors"][0]["extensions"]["field"] == "region"
        ok = gql(client, amend, {"id": registered["id"], "v": 1, "p": {"tags": ["x"]}})
        assert ok["data"] == {"amendDataset": {"version": 2}}

    def test_a_page_above_the_ceiling_is_refused_naming_first(
        self, client: TestClient[Any]
    ) -> None:
        """first: 201 on the datasets search (REST's ceiling is 200)."""
        answer = gql(client, "{ datasets(first: 201) { id } }")
        assert codes(answer) == ["bad-request"]
        assert answer["errors"][0]["extensions"]["field"] == "first"


class TestGet:
    def test_get_answers_a_query_and_refuses_a_mutation(
        self, client: TestClient[Any]
    ) -> None:
        """GET /graphql?query= reads; a mutation by GET is refused, writing nothing."""
        registered = gql(
            client,
            "mutation($input: DatasetInput!) { registerDatasetAccepted(input: $input) "
            "{ id position } }",
            {"input": INPUT},
        )["data"]["registerDatasetAccepted"]
        query = f"{{ datasets(minPosition: {registered['position']}) {{ name }} }}"
        read = client.get("/graphql", params={"query": query}, headers=ACME)
        assert read.status_code == 200, read.text
        assert read.json()["data"] == {"datasets": [{"name": "orders"}]}
        before = log_head(client)
        retire = f'mutation {{ retireDataset(id: "{registered["id"]}") {{ version }} }}'
        refused = client.get("/graphql", params={"query": retire}, headers=ACME)
        assert refused.status_code == 400
        assert log_head(client) == before


class TestSchemaAndIde:
    def test_the_committed_sdl_is_the_codes_schema(self, settings: Settings) -> None:
        """docs/schema.graphql is the printed SDL, @auth directives included."""
        committed = (REPO_ROOT / "docs" / "schema.graphql").read_text()
        assert committed == printed_sdl(settings), (
            "docs/schema.graphql drifted from the code; regenerate it with "
            "`.venv/bin/python -m api.graphql.schema > docs/schema.graphql`"
        )
        assert "datasets(q: String = null, license: String = null" in committed
        assert '@auth(abac: "export.request")' in committed

    def test_graphiql_is_served_with_no_external_url(
        self, client: TestClient[Any]
    ) -> None:
        """GET /graphql (HTML) names only assets Conductor serves, each 200."""
        page = client.get("/graphql", headers={"Accept": "text/html"})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page.text)
        assets = re.findall(r"(?:src|href)=\"(/[^\"]+)\"", page.text)
        assert len(assets) == 4
        for asset in assets:
            served = client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 1000, asset
