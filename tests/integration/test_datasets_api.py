"""The dataset registry and catalog through real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import bearer, dataset_body

if TYPE_CHECKING:
    from litestar.testing import TestClient

pytestmark = pytest.mark.integration
H = bearer("acme")


def log_head(client: TestClient[Any]) -> dict[str, Any]:
    return client.get("/v1/log?limit=1", headers=H).json()["head"]


def register(client: TestClient[Any], name: str, **overrides: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/datasets", json=dataset_body(name, **overrides), headers=H
    )
    assert response.status_code == 201, response.text
    return response.json()


def search(client: TestClient[Any], query: str = "", **headers: str) -> Any:
    return client.get(f"/v1/datasets{query}", headers={**H, **headers})


class TestRegistration:
    def test_register_returns_201_with_location_etag_and_position(
        self, client: TestClient[Any]
    ) -> None:
        """A new dataset: 201, Location, ETag "1" and the log position."""
        response = client.post("/v1/datasets", json=dataset_body(), headers=H)
        assert response.status_code == 201
        body = response.json()
        assert response.headers["location"] == f"/v1/datasets/{body['id']}"
        assert response.headers["etag"] == '"1"'
        assert body["version"] == 1
        assert body["position"] == log_head(client)["position"]

    def test_identical_registration_is_200_with_no_new_event(
        self, client: TestClient[Any]
    ) -> None:
        """The same body again answers 200 with the same id and appends nothing."""
        first = register(client, "orders")
        head = log_head(client)
        again = client.post("/v1/datasets", json=dataset_body("orders"), headers=H)
        assert again.status_code == 200
        assert again.json()["id"] == first["id"]
        assert again.json()["position"] == first["position"]
        assert log_head(client) == head

    def test_different_body_under_the_same_name_is_409(
        self, client: TestClient[Any]
    ) -> None:
        """The natural key (tenant, name) is taken: conflict names the dataset."""
        first = register(client, "orders")
        response = client.post(
            "/v1/datasets", json=dataset_body("orders", license="Other"), headers=H
        )
        assert response.status_code == 409
        problem = response.json()
        assert problem["type"] == "/problems/dataset-name-taken"
        assert problem["datasetId"] == first["id"]

    def test_same_name_in_another_tenant_is_another_dataset(
        self, client: TestClient[Any]
    ) -> None:
        """Names are unique per tenant only."""
        mine = register(client, "orders")
        theirs = client.post(
            "/v1/datasets", json=dataset_body("orders"), headers=bearer("globex")
        )
        assert theirs.status_code == 201
        assert theirs.json()["id"] != mine["id"]

    def test_idempotency_key_replays_the_first_response(
        self, client: TestClient[Any]
    ) -> None:
        """A retried command with its key gets the original answer, no new event."""
        headers = {**H, "Idempotency-Key": "req-42"}
        first = client.post("/v1/datasets", json=dataset_body(), headers=headers)
        head = log_head(client)
        second = client.post("/v1/datasets", json=dataset_body(), headers=headers)
        assert second.status_code == first.status_code == 201
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert log_head(client) == head

    def test_idempotency_key_covers_amendments(self, client: TestClient[Any]) -> None:
        """A replayed PATCH does not apply twice even though If-Match is now stale."""
        created = register(client, "orders")
        headers = {**H, "If-Match": '"1"', "Idempotency-Key": "patch-1"}
        url = f"/v1/datasets/{created['id']}"
        first = client.patch(url, json={"description": "v2"}, headers=headers)
        second = client.patch(url, json={"description": "v2"}, headers=headers)
        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert client.get(url, headers=H).json()["version"] == 2


class TestAmendRetire:
    def test_patch_changes_only_the_given_fields(self, client: TestClient[Any]) -> None:
        """A partial update keeps every other field and bumps the version."""
        created = register(client, "orders")
        url = f"/v1/datasets/{created['id']}"
        response = client.patch(
            url,
            json={"description": "new", "tags": ["x", "y"]},
            headers={**H, "If-Match": '"1"'},
        )
        assert response.status_code == 200
        assert response.headers["etag"] == '"2"'
        current = client.get(url, headers=H)
        assert current.headers["etag"] == '"2"'
        data = current.json()
        assert (data["description"], data["tags"], data["license"]) == (
            "new",
            ["x", "y"],
            "Restricted-TOS",
        )

    def test_patch_that_changes_nothing_keeps_the_version(
        self, client: TestClient[Any]
    ) -> None:
        """No change, no event: still 200 with the same version."""
        created = register(client, "orders")
        head = log_head(client)
        response = client.patch(
            f"/v1/datasets/{created['id']}",
            json={"license": "Restricted-TOS"},
            headers={**H, "If-Match": '"1"'},
        )
        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert log_head(client) == head

    def test_retire_keeps_history_and_blocks_amendments(
        self, client: TestClient[Any]
    ) -> None:
        """DELETE records Retired; the dataset stays readable; PATCH is then 409."""
        created = register(client, "orders")
        url = f"/v1/datasets/{created['id']}"
        retired = client.delete(url + "?reason=superseded", headers=H)
        assert retired.status_code == 200
        assert client.get(url, headers=H).json()["status"] == "retired"
        again = client.delete(url, headers=H)
        assert again.status_code == 200
        assert again.json()["version"] == retired.json()["version"]
        patch = client.patch(
            url,
            json={"description": "x"},
            headers={**H, "If-Match": f'"{retired.json()["version"]}"'},
        )
        assert patch.status_code == 409
        assert patch.json()["type"] == "/problems/dataset-retired"
        history = client.get(url + "/history", headers=H).json()["entries"]
        assert [e["topic"].rsplit(".", 1)[1] for e in history] == [
            "Registered",
            "Retired",
        ]
        assert history[1]["state"]["reason"] == "superseded"

    def test_history_entries_carry_chain_hashes(self, client: TestClient[Any]) -> None:
        """History shows positions and hashes identical to the global log's."""
        created = register(client, "orders")
        client.patch(
            f"/v1/datasets/{created['id']}",
            json={"owner": "team"},
            headers={**H, "If-Match": '"1"'},
        )
        history = client.get(f"/v1/datasets/{created['id']}/history", headers=H).json()
        log = {
            e["position"]: e for e in client.get("/v1/log", headers=H).json()["entries"]
        }
        assert len(history["entries"]) == 2
        for entry in history["entries"]:
            assert log[entry["position"]]["hash"] == entry["hash"]
            assert len(entry["hash"]) == 64


class TestLineage:
    def test_lineage_walks_up_and_down_to_a_depth(
        self, client: TestClient[Any]
    ) -> None:
        """raw <- clean <- report: up from report, down from raw, depth-limited."""
        raw = register(client, "raw")["id"]
        clean = register(client, "clean", upstream=[raw])["id"]
        report = register(client, "report")["id"]
        linked = client.post(
            f"/v1/datasets/{report}/lineage", json={"upstream": [clean]}, headers=H
        )
        assert linked.status_code == 200
        position = str(linked.json()["position"])
        up = client.get(
            f"/v1/datasets/{report}/lineage?direction=up&depth=5",
            headers={**H, "x-ig-min-position": position},
        ).json()
        assert [n["name"] for n in up["nodes"]] == ["report", "clean", "raw"]
        assert {(e["downstream"], e["upstream"]) for e in up["edges"]} == {
            (report, clean),
            (clean, raw),
        }
        down = client.get(
            f"/v1/datasets/{raw}/lineage?direction=down&depth=1",
            headers={**H, "x-ig-min-position": position},
        ).json()
        assert [(n["name"], n["depth"]) for n in down["nodes"]] == [
            ("raw", 0),
            ("clean", 1),
        ]

    def test_a_cycle_is_refused_with_its_path(self, client: TestClient[Any]) -> None:
        """Linking raw upstream to report (which depends on raw): a 409 naming
        the loop."""
        raw = register(client, "raw")["id"]
        clean = register(client, "clean", upstream=[raw])["id"]
        head = log_head(client)
        response = client.post(
            f"/v1/datasets/{raw}/lineage", json={"upstream": [clean]}, headers=H
        )
        assert response.status_code == 409
        assert response.json()["type"] == "/problems/lineage-cycle"
        assert response.json()["cycle"] == [raw, clean, raw]
        assert log_head(client) == head

    def test_upstream_from_another_tenant_is_unknown(
        self, client: TestClient[Any]
    ) -> None:
        """Lineage never crosses tenants; the foreign id is reported as not existing."""
        theirs = client.post(
            "/v1/datasets", json=dataset_body("x"), headers=bearer("globex")
        ).json()["id"]
        mine = register(client, "orders")["id"]
        response = client.post(
            f"/v1/datasets/{mine}/lineage", json={"upstream": [theirs]}, headers=H
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "upstream[0]"


class TestCatalogSearch:
    @pytest.fixture
    def catalog(self, client: TestClient[Any]) -> str:
        """Twelve datasets with varied facets; returns the position to wait for."""
        last = 0
        for i in range(12):
            body = dataset_body(
                f"ds-{i:02d}",
                description="customer payments ledger" if i % 2 else "web click stream",
                license=["Restricted-TOS", "CC-BY-4.0", "Embargoed"][i % 3],
                purposes=["investigation"] if i % 4 else ["investigation", "fraud"],
                region=["EU", "US"][i % 2],
                tags=["finance"] if i % 2 else ["web"],
                columns=[
                    {
                        "name": "iban_number" if i % 2 else "page_url",
                        "classification": "secret" if i % 2 else "public",
                    }
                ],
            )
            last = client.post("/v1/datasets", json=body, headers=H).json()["position"]
        return str(last)

    def test_text_search_matches_names_descriptions_tags_and_columns(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """Words from any searchable field find the dataset (prefixes too)."""
        wait = {"x-ig-min-position": catalog}
        for query, expected in [
            ("payments", 6),
            ("financ", 6),
            ("iban", 6),
            ("ds-03", 1),
            ("click stream", 6),
            ("nothing-here", 0),
        ]:
            body = search(client, f"?q={query}", **wait).json()
            assert body["total"] == expected, query
            assert len(body["items"]) == min(expected, 20)

    def test_facets_count_the_result_and_filters_narrow_it(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """Facet counts are disjunctive: a filter does not hide its own alternatives."""
        wait = {"x-ig-min-position": catalog}
        everything = search(client, "", **wait).json()
        assert everything["total"] == 12
        assert everything["facets"]["license"] == {
            "CC-BY-4.0": 4,
            "Embargoed": 4,
            "Restricted-TOS": 4,
        }
        assert everything["facets"]["purpose"] == {"investigation": 12, "fraud": 3}
        eu = search(client, "?region=EU&purpose=fraud", **wait).json()
        assert eu["total"] == 3
        assert eu["facets"]["region"] == {"EU": 3}
        assert {i["region"] for i in eu["items"]} == {"EU"}
        assert search(client, "?tag=web&license=Embargoed", **wait).json()["total"] == 2

    def test_tag_and_contract_status_facets_are_exact_and_tenant_scoped(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """Tag and contractStatus count like the other facets; another tenant's
        tags are never counted and its filter values find nothing here."""
        theirs = dataset_body(
            "their-ds", tags=["finance", "globex-only"], contractStatus="draft"
        )
        client.post("/v1/datasets", json=theirs, headers=bearer("globex"))
        draft = dataset_body("ds-draft", tags=["web"], contractStatus="draft")
        last = client.post("/v1/datasets", json=draft, headers=H).json()["position"]
        wait = {"x-ig-min-position": str(last)}
        everything = search(client, "", **wait).json()
        assert everything["total"] == 13
        assert everything["facets"]["tag"] == {"web": 7, "finance": 6}
        assert everything["facets"]["contractStatus"] == {"active": 12, "draft": 1}
        web = search(client, "?tag=web", **wait).json()
        assert web["total"] == 7
        assert web["facets"]["tag"] == {"web": 7, "finance": 6}  # its own: ignored
        assert web["facets"]["contractStatus"] == {"active": 6, "draft": 1}
        drafts = search(client, "?contractStatus=draft", **wait).json()
        assert [i["name"] for i in drafts["items"]] == ["ds-draft"]
        assert drafts["facets"]["tag"] == {"web": 1}
        assert drafts["facets"]["contractStatus"] == {"active": 12, "draft": 1}
        assert search(client, "?tag=globex-only", **wait).json()["total"] == 0
        other = client.get("/v1/datasets", headers={**bearer("globex"), **wait})
        assert other.json()["facets"]["tag"] == {"finance": 1, "globex-only": 1}
        assert other.json()["facets"]["contractStatus"] == {"draft": 1}

    def test_sort_by_name_lists_text_matches_by_name_and_pages_them(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """`sort=name` orders the same matches by name; the cursor keeps it."""
        wait = {"x-ig-min-position": catalog}
        ranked = search(client, "?q=payments", **wait).json()
        first = search(client, "?q=payments&sort=name&limit=4", **wait).json()
        assert first["total"] == ranked["total"] == 6
        assert first["facets"] == ranked["facets"]
        rest = search(
            client, f"?q=payments&sort=name&limit=4&after={first['next']}", **wait
        ).json()
        names = [i["name"] for i in first["items"] + rest["items"]]
        assert names == [f"ds-{i:02d}" for i in range(1, 12, 2)]
        assert rest["next"] is None
        mixed = search(client, f"?q=payments&limit=4&after={first['next']}", **wait)
        assert mixed.status_code == 400  # a name cursor is not a relevance cursor
        bad = search(client, "?q=payments&sort=newest", **wait)
        assert bad.status_code == 400
        assert "sort" in bad.text

    def test_cursor_pages_through_everything_exactly_once(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """Following `next` yields every match once, in a stable order, text or not."""
        wait = {"x-ig-min-position": catalog}
        for query in ["?limit=5", "?q=ledger&limit=4"]:
            seen: list[str] = []
            url: str | None = f"/v1/datasets{query}"
            while url:
                page = client.get(url, headers={**H, **wait}).json()
                seen += [i["name"] for i in page["items"]]
                url = (
                    f"/v1/datasets{query}&after={page['next']}"
                    if page["next"]
                    else None
                )
            total = search(client, query, **wait).json()["total"]
            assert len(seen) == len(set(seen)) == total

    def test_a_cursor_from_another_query_is_refused(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """Cursors are bound to their query: reuse elsewhere is a 400 naming `after`."""
        cursor = search(client, "?limit=2", **{"x-ig-min-position": catalog}).json()[
            "next"
        ]
        response = search(client, f"?q=ledger&after={cursor}")
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "after"

    def test_retired_datasets_leave_the_default_listing(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """status=active is the default; retired ones show under status=retired."""
        first = search(client, "?q=ds-00", **{"x-ig-min-position": catalog}).json()
        retired = client.delete(f"/v1/datasets/{first['items'][0]['id']}", headers=H)
        wait = {"x-ig-min-position": str(retired.json()["position"])}
        assert search(client, "", **wait).json()["total"] == 11
        assert search(client, "?status=retired", **wait).json()["total"] == 1
        assert search(client, "?status=any", **wait).json()["total"] == 12

    def test_read_model_headers_report_position_and_lag(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """x-ig-position is at least what we waited for; lag is a count of events."""
        response = search(client, "", **{"x-ig-min-position": catalog})
        assert int(response.headers["x-ig-position"]) >= int(catalog)
        assert int(response.headers["x-ig-lag-events"]) >= 0

    def test_repeated_searches_are_cached_until_the_position_moves(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """Same query at the same position: a cache hit; a new event: fresh results."""
        wait = {"x-ig-min-position": catalog}
        first = search(client, "?q=ledger", **wait)
        again = search(client, "?q=ledger", **wait)
        assert (first.headers["x-ig-cache"], again.headers["x-ig-cache"]) == (
            "miss",
            "hit",
        )
        assert again.json() == first.json()
        done = register(client, "new-ledger", description="ledger of refunds")
        fresh = search(
            client, "?q=ledger", **{"x-ig-min-position": str(done["position"])}
        )
        assert fresh.headers["x-ig-cache"] == "miss"
        assert fresh.json()["total"] == first.json()["total"] + 1

    def test_waiting_for_a_future_position_times_out_with_503(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """A position the log never reaches: 503 problem with Retry-After."""
        response = search(
            client, "", **{"x-ig-min-position": str(int(catalog) + 10_000)}
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"] == "/problems/projection-lagging"

    def test_other_tenants_see_nothing(
        self, client: TestClient[Any], catalog: str
    ) -> None:
        """Search is tenant-scoped."""
        other = client.get(
            "/v1/datasets", headers={**bearer("globex"), "x-ig-min-position": catalog}
        )
        assert other.json()["total"] == 0


class TestCoverageAndOps:
    def test_coverage_counts_registered_data_files(
        self, client: TestClient[Any], settings: Any
    ) -> None:
        """Files under the tenant's data root count as covered when a dataset
        points there."""
        root = settings.data_root_path / "acme"
        (root / "raw").mkdir(parents=True)
        for name in ["raw/a.csv", "raw/b.jsonl", "c.csv", "notes.txt"]:
            (root / name).write_text("id\n1\n")
        register(client, "a", location="raw/a.csv")
        last = register(client, "gone", location="missing.csv")["position"]
        body = client.get(
            "/v1/catalog/coverage", headers={**H, "x-ig-min-position": str(last)}
        ).json()
        assert (body["filesFound"], body["filesRegistered"]) == (3, 1)
        assert body["coverage"] == pytest.approx(1 / 3, abs=1e-6)
        assert body["unregistered"] == ["c.csv", "raw/b.jsonl"]
        assert body["missingLocations"] == ["missing.csv"]
        metrics = client.get("/metrics").text
        assert 'conductor_catalog_coverage_ratio{tenant="acme"} 0.333' in metrics

    def test_log_pages_chain_together(self, client: TestClient[Any]) -> None:
        """Each entry's prev_hash is the previous entry's hash, across pages."""
        for i in range(5):
            register(client, f"d{i}")
        first = client.get("/v1/log?limit=3", headers=H).json()
        second = client.get(
            f"/v1/log?after={first['nextAfter']}&limit=3", headers=H
        ).json()
        entries = first["entries"] + second["entries"]
        assert [e["position"] for e in entries] == list(range(1, 6))
        assert entries[0]["prevHash"] == "0" * 64
        for before, after in itertools.pairwise(entries):
            assert after["prevHash"] == before["hash"]
        assert second["head"]["hash"] == entries[-1]["hash"]

    def test_log_needs_audit_scope(self, client: TestClient[Any]) -> None:
        """The global log is for auditors only."""
        response = client.get("/v1/log", headers=bearer("acme", "catalog.read"))
        assert response.status_code == 403
        assert "audit.read" in response.json()["detail"]

    def test_metrics_and_readiness(self, client: TestClient[Any]) -> None:
        """Prometheus counters move; /readyz reports the projection."""
        register(client, "orders")
        metrics = client.get("/metrics").text
        assert "conductor_events_appended_total 1.0" in metrics
        assert 'conductor_projection_lag_events{projection="catalog"}' in metrics
        assert 'route="/v1/datasets"' in metrics
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["catalog"]["running"] is True
        assert client.get("/healthz").json() == {"status": "ok"}

    def test_openapi_document_lists_the_routes(self, client: TestClient[Any]) -> None:
        """OpenAPI 3.1 at /schema with every dataset route."""
        spec = client.get("/schema/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        assert {
            "/v1/datasets",
            "/v1/datasets/{dataset_id}",
            "/v1/log",
            "/v1/catalog/coverage",
        } <= set(spec["paths"])
