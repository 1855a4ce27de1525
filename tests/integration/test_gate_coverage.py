"""Recorded CI gate runs make datasets active: coverage, the gauge, the alert.

On SQLite and PostgreSQL: a gate run naming unregistered datasets drops the
tenant's conductor_catalog_coverage_ratio, as scraped from GET /metrics,
under 0.9, and the real promtool fires ConductorCatalogCoverageLow on that
scraped series (and not on 0.95); the repository's next run that no longer
names them brings it back. The gate runs read model is tenant-scoped and
rebuilds from the log to the same answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from domain.catalog.dataset import Dataset
from tests.conftest import bearer, dataset_body
from tests.integration.test_alert_rules import RULES, promtool

if TYPE_CHECKING:
    from pathlib import Path

    from litestar.testing import TestClient

    from api.bootstrap import Conductor
    from api.settings import Settings

pytestmark = pytest.mark.integration
DIGEST = "sha256:" + "ab" * 32


def services_of(client: TestClient[Any]) -> Conductor:
    return client.app.state.conductor  # type: ignore[no-any-return]


def record(
    client: TestClient[Any],
    repo: str,
    datasets: list[str],
    *,
    tenant: str = "acme",
    commit: str = "c0ffee",
    digest: str = DIGEST,
) -> int:
    """POST a gate run (what `conductor catalog gate --record` sends); its position."""
    done = client.post(
        "/v1/catalog/gate-runs",
        json={"repo": repo, "commit": commit, "findings": 0, "findingsDigest": digest,
              "datasets": datasets, "failing": []},
        headers=bearer(tenant, "catalog.write"),
    )  # fmt: skip
    assert done.status_code == 201, done.text
    position = done.json()["position"]
    assert isinstance(position, int)
    return position


def coverage(client: TestClient[Any], position: int, tenant: str = "acme") -> Any:
    answer = client.get(
        "/v1/catalog/coverage",
        headers={**bearer(tenant, "catalog.read"), "x-ig-min-position": str(position)},
    )
    assert answer.status_code == 200, answer.text
    assert int(answer.headers["x-ig-position"]) >= position
    return answer.json()


def scraped(client: TestClient[Any], position: int) -> dict[str, float]:
    """refresh_coverage (the 60 s job), then the gauge per tenant from /metrics."""
    services = services_of(client)
    assert services.core.runners["gate-runs"].wait(position, timeout=10)
    assert services.core.runners["catalog"].wait(position, timeout=10)
    services.jobs.refresh_coverage()
    text = client.get("/metrics").text
    return {
        sample.labels["tenant"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "conductor_catalog_coverage_ratio"
        for sample in family.samples
    }


def register_with_file(client: TestClient[Any], settings: Settings, name: str) -> int:
    root = settings.data_root_path / "acme"
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{name}.csv").write_text("email,amount\na@example.com,1\n")
    done = client.post(
        "/v1/datasets",
        json=dataset_body(name, location=f"{name}.csv"),
        headers=bearer("acme", "catalog.write"),
    )
    assert done.status_code == 201, done.text
    return int(done.json()["position"])


def test_a_gate_run_naming_unregistered_datasets_drops_the_scraped_gauge(
    client: TestClient[Any], settings: Settings, tmp_path: Path
) -> None:
    """1.0 with one registered file; a run naming it and two unregistered
    datasets: 1 of 3, under 0.9, and promtool's alert fires on that series."""
    position = register_with_file(client, settings, "orders")
    assert scraped(client, position)["acme"] == 1.0

    position = record(client, "acme/shop", ["orders", "ghost_a", "ghost_b"])
    body = coverage(client, position)
    assert (body["datasetsInUse"], body["registeredInUse"]) == (3, 1)
    assert body["unregisteredInUse"] == [
        {"location": "", "datasetId": str(Dataset.create_id("acme", name)),
         "seenBy": ["gate"], "name": name}
        for name in sorted(
            ["ghost_a", "ghost_b"], key=lambda n: str(Dataset.create_id("acme", n))
        )
    ]  # fmt: skip
    sources = {s["source"]: (s["active"], s["registered"]) for s in body["sources"]}
    assert sources["gate"] == (3, 1)
    assert sources["files"] == (1, 1)  # orders.csv: the file and the name, once
    low = scraped(client, position)["acme"]
    assert low == pytest.approx(1 / 3)
    assert low < 0.9
    fires_on(low, tmp_path)

    # The repository's next run no longer names them: back to 1.0.
    position = record(client, "acme/shop", ["orders"], commit="beef", digest=DIGEST)
    assert coverage(client, position)["datasetsInUse"] == 1
    assert scraped(client, position)["acme"] == 1.0


RULE_TEST = """\
rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'conductor_catalog_coverage_ratio{{tenant="acme", job="conductor"}}'
        values: "1x10 {ratio!r}x60"
      - series: 'conductor_catalog_coverage_ratio{{tenant="beta", job="conductor"}}'
        values: "0.95x70"
    alert_rule_test:
      - eval_time: 40m
        alertname: ConductorCatalogCoverageLow
        exp_alerts: []
      - eval_time: 41m
        alertname: ConductorCatalogCoverageLow
        exp_alerts:
          - exp_labels:
              severity: ticket
              tenant: acme
            exp_annotations:
              summary: "Catalog coverage of tenant acme is {percent} (under 90 %)"
              description: "Fewer than 90 % of tenant acme's active datasets (the \
ones in use) have been registered in the catalog for 30 minutes: exports and \
lineage cannot govern what the catalog does not know."
              runbook_url: docs/runbooks.md#conductorcatalogcoveragelow
"""
"""The real rules on a scraped value: 10 minutes at 1.0, then the value; a
healthy 0.95 beside it. Only acme's ticket, 30 minutes after the drop."""


def fires_on(ratio: float, tmp_path: Path) -> None:
    """promtool runs RULE_TEST on the scraped ratio (and fails if no ticket)."""
    percent = f"{ratio * 100:.4g}%"  # Prometheus' humanizePercentage
    path = tmp_path / "scraped.yml"
    text = RULE_TEST.format(rules=RULES, ratio=ratio, percent=percent)
    path.write_text(text, encoding="utf-8")
    assert yaml.safe_load(text)["rule_files"] == [str(RULES)]
    done = promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_newest_run_of_each_repository_is_what_it_uses(
    client: TestClient[Any],
) -> None:
    """Two repositories add up; a repository's later run replaces its earlier."""
    record(client, "acme/shop", ["a", "b"])
    record(client, "acme/etl", ["b", "c"])
    body = coverage(client, record(client, "acme/shop", ["d"], commit="2"))
    names = sorted(u["name"] for u in body["unregisteredInUse"])
    assert names == ["b", "c", "d"]
    assert services_of(client).catalog.gate_view.gate_datasets("acme") == names


def test_gate_runs_are_the_tenants_own(client: TestClient[Any]) -> None:
    """globex's run naming acme's registered dataset counts only for globex,
    and unregistered there; acme's coverage is untouched. globex gets a gauge
    though it has no dataset at all."""
    done = client.post(
        "/v1/datasets", json=dataset_body("orders"), headers=bearer("acme")
    )
    assert done.status_code == 201, done.text
    position = record(client, "globex/app", ["orders"], tenant="globex")
    theirs = coverage(client, position, tenant="globex")
    assert (theirs["datasetsInUse"], theirs["registeredInUse"]) == (1, 0)
    assert theirs["unregisteredInUse"][0]["datasetId"] == str(
        Dataset.create_id("globex", "orders")
    )
    ours = coverage(client, position)
    assert ours["datasetsInUse"] == 0
    gauges = scraped(client, position)
    assert gauges["globex"] == 0.0
    assert gauges["acme"] == 1.0


def test_the_gate_runs_view_rebuilds_to_the_same_answers(
    client: TestClient[Any],
) -> None:
    """Dropped and replayed from the log, the view gives the same coverage."""
    record(client, "acme/shop", ["a", "b"])
    position = record(client, "acme/shop", ["b", "c"], commit="2")
    before = coverage(client, position)
    runner = services_of(client).core.runners["gate-runs"]
    runner.stop()
    runner.projection.view.reset()
    assert services_of(client).catalog.gate_view.gate_datasets("acme") == []
    runner.catch_up()
    assert runner.position() >= position
    assert coverage(client, position) == before
    assert [u["name"] for u in before["unregisteredInUse"]] != []
