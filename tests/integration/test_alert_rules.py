"""The Prometheus rules and the Grafana dashboard (deploy/).

promtool checks the rules and runs their unit tests; a rules file with a
changed threshold fails those tests; every alert names its severity and a
runbook section that exists; the dashboard is valid; and every metric the
rules and the dashboard read is on a real /metrics scrape, with the labels
they use (the app runs against a real DR pair, so the DR metrics are there).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO_ROOT, bearer, dataset_body
from tests.integration.dr_support import pair_api, pair_site
from tests.integration.test_docs import slugs
from tests.integration.test_er_api import rec, resolve
from tests.integration.test_exports import proven, request, settle, write_source

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar.testing import TestClient

pytestmark = pytest.mark.integration

RULES = REPO_ROOT / "deploy" / "prometheus" / "conductor.rules.yml"
RULE_TESTS = sorted((REPO_ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "conductor.json"
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
TARGET_LABELS = frozenset({"instance", "job", "__name__"})
"""Labels Prometheus adds at scrape time: never on /metrics itself."""
CORE_PANELS = frozenset({"timeseries", "stat", "gauge", "bargauge", "table"})


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real promtool (from PATH, else Debian's /usr/bin/promtool)."""
    found = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None
    )
    if found is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package "
            "(scripts/test does, as root: apt-get install prometheus)"
        )
    return subprocess.run(
        [found, *args], capture_output=True, text=True, timeout=120, check=False
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules_file() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_the_promtool_unit_tests_pass() -> None:
    """Every file of deploy/prometheus/tests, each against ../conductor.rules.yml."""
    assert RULE_TESTS
    for path in RULE_TESTS:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert loaded["rule_files"] == ["../conductor.rules.yml"], path.name
    done = promtool("test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS), done.stdout


MUTANTS = {
    "lag threshold": ("replica_lag.yml", "lag_ms) > 5000", "lag_ms) > 3000"),
    "lag for": ("replica_lag.yml", "5000\n        for: 10m", "5000\n        for: 5m"),
    "unproven": ("exports.yml", '"proven|failed|', '"proven|delivered|failed|'),
    "er gain": ("quality.yml", "recall_gain) < 0.10", "recall_gain) < 0.05"),
    "coverage": ("quality.yml", "coverage_ratio) < 0.9", "coverage_ratio) < 0.8"),
    "page burn": ("burn_rate.yml", "rate:1h >= 14.4", "rate:1h >= 20"),
}  # fmt: skip
"""A change to the rules -> the unit-test file that must then fail."""


@pytest.mark.parametrize("mutant", MUTANTS)
def test_a_changed_rule_fails_its_promtool_unit_tests(
    mutant: str, tmp_path: Path
) -> None:
    """A copy of the rules with one threshold changed fails its unit tests."""
    test_file, old, new = MUTANTS[mutant]
    text = RULES.read_text(encoding="utf-8")
    assert old in text, f"{mutant}: {old!r} is no longer in the rules"
    mutated = tmp_path / "conductor.rules.yml"
    mutated.write_text(text.replace(old, new), encoding="utf-8")
    assert promtool("check", "rules", str(mutated)).returncode == 0
    (tmp_path / "tests").mkdir()
    copy = shutil.copy(RULES.parent / "tests" / test_file, tmp_path / "tests")
    done = promtool("test", "rules", str(copy))
    assert done.returncode != 0, f"{mutant}: the unit tests still pass\n{done.stdout}"
    assert "FAILED" in done.stdout + done.stderr


def test_every_alert_has_a_severity_its_texts_and_a_runbook_section() -> None:
    anchors = slugs(RUNBOOKS)
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} == {
        "ConductorReplicaLagHigh",
        "ConductorExportWithoutProof",
        "ConductorErRecallGainLow",
        "ConductorCatalogCoverageLow",
        "ConductorBurnRatePage",
        "ConductorBurnRateTicket",
    }
    for alert in alerts:
        name, notes = alert["alert"], alert["annotations"]
        assert alert["labels"]["severity"] in {"page", "ticket"}, name
        assert notes["summary"].strip(), name
        assert notes["description"].strip(), name
        file, _, anchor = notes["runbook_url"].partition("#")
        assert file == "docs/runbooks.md", name
        assert anchor == name.lower(), name
        assert anchor in anchors, f"{name}: no section #{anchor} in docs/runbooks.md"
        used = set(re.findall(r"[a-z_]+:[a-z_]+:\w+", alert["expr"]))
        assert used <= recorded, f"{name} reads unrecorded series {used - recorded}"


# -- what the expressions read ---------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"[\w:]*?(?P<name>conductor_[a-z_]+)[\w:]*\s*(?P<m>\{[^}]*\})?")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?P<labels>[^)]*)\)"
)
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_LABEL_VALUES = re.compile(r"label_values\(\s*(conductor_[a-z_]+)\s*,\s*(\w+)\s*\)")


def reads(expr: str, legend: str = "") -> dict[str, set[str]]:
    """Metric name -> the labels an expression asks of it: its matchers, plus
    the expression's by/on/... labels and legend labels (asked of every metric
    in it: the files keep grouped expressions to one metric, or group alike)."""
    bare = _STRING.sub('""', expr)
    shared = {
        label.strip()
        for group in _GROUPING.finditer(bare)
        for label in group["labels"].split(",")
        if label.strip()
    } | set(_LEGEND.findall(legend))
    found: dict[str, set[str]] = {}
    for selector in _SELECTOR.finditer(bare):
        labels = set(_MATCHER.findall(selector["m"] or "")) | shared
        found.setdefault(selector["name"], set()).update(labels - TARGET_LABELS)
    return found


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def used() -> dict[str, set[str]]:
    """Every metric the rules and the dashboard read, with the labels they use."""
    found: dict[str, set[str]] = {}
    exprs = [(rule["expr"], "") for rule in rules()]
    exprs += [
        (target["expr"], target.get("legendFormat", ""))
        for panel in dashboard()["panels"]
        for target in panel["targets"]
    ]
    for expr, legend in exprs:
        for name, labels in reads(expr, legend).items():
            found.setdefault(name, set()).update(labels)
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query)
        for name, label in _LABEL_VALUES.findall(text):
            found.setdefault(name, set()).add(label)
    return found


def test_the_expressions_are_read_as_the_metrics_and_labels_they_use() -> None:
    """The parser above finds what the alerts are about (so the scrape check
    below checks something)."""
    found = used()
    assert found["conductor_dr_replica_lag_ms"] == {"region"}
    assert found["conductor_burn_rate"] == {"tenant", "kind", "window"}
    assert found["conductor_exports_total"] == {"status"}
    assert found["conductor_catalog_coverage_ratio"] == {"tenant"}
    assert found["conductor_er_recall_gain"] == set()
    assert "conductor_dr_secondary_reads_total" in found
    assert reads('sum by (a) (x:conductor_b_c:5m{d!~"e|f"}) / conductor_g') == {
        "conductor_b_c": {"a", "d"},
        "conductor_g": {"a"},
    }


def test_the_dashboard_is_valid_and_reads_its_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    source = variables["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == wanted, variable["name"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["title"].strip(), panel
        assert panel["type"] in CORE_PANELS, panel["title"]
        assert panel["datasource"] == wanted, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"] == wanted, panel["title"]


def test_the_dashboard_expressions_parse_as_promql(tmp_path: Path) -> None:
    """promtool parses each panel's query (its variables filled in) as a rule."""
    filled = {"$__rate_interval": "5m", "$tenant": ".*", "$region": ".*"}
    records = []
    for number, panel in enumerate(dashboard()["panels"]):
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in filled.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: an unknown variable"
            records.append({"record": f"dashboard:panel_{number}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "d", "rules": records}]}))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


# -- the scrape ---------------------------------------------------------------------

SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


@pytest.fixture(scope="module")
def dr_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient[Any]]:
    """The app in region B of a real DR pair (its own log in SQLite), with a
    one-record ER cap (a 429 to count) and the meter and autopilot by hand."""
    sites = pair_site(tmp_path_factory, "alertpair")
    site = next(sites)
    try:
        yield from pair_api(
            site,
            tmp_path_factory,
            "alertvar",
            log_on_pair=False,
            er_cap_records_per_day=1,
            meter_flush_s=3600.0,
            autopilot_interval_s=3600.0,
        )
    finally:
        sites.close()


def exercise_exports(client: TestClient[Any]) -> None:
    """A proven export and one DLP refuses (runs by status, failures by reason)."""
    settings = client.app.state.conductor.core.settings
    proven(client, settings)
    write_source(settings, "leaky.csv", "amount,memo\n1,mail alice@example.com\n")
    columns = [
        {"name": "amount", "classification": "public"},
        {"name": "memo", "classification": "public"},
    ]
    body = dataset_body("leaky", location="leaky.csv", columns=columns)
    created = client.post("/v1/datasets", json=body, headers=bearer())
    export_id = request(client, created.json()["id"]).json()["id"]
    assert settle(client, export_id)["status"] == "failed"


def exercise_tenant(client: TestClient[Any]) -> None:
    """Coverage, a budget's burn and cap after a controller tick, a 429."""
    services = client.app.state.conductor
    assert client.get("/v1/catalog/coverage", headers=bearer()).status_code == 200
    budget = {"period": "day", "costCapUnits": 100000}
    assert client.put(
        "/v1/tenants/acme/budget", json=budget, headers=bearer()
    ).status_code in {200, 201}
    refused = resolve(client, [rec("a", "ann", "lee"), rec("b", "bo", "lee")])
    assert refused.status_code == 429, refused.text
    deadline = time.monotonic() + 5
    while services.autopilot.meter.pending() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    services.jobs.flush_meter()
    services.jobs.run_autopilot()


def exercise_dr(client: TestClient[Any]) -> None:
    """A command on the primary, read back from the standby (region B)."""
    sent = client.post(
        "/v1/dr/commands", json={"key": "alerts-1", "payload": {}}, headers=bearer()
    )
    assert sent.status_code in {200, 201}, sent.text
    read = client.get(
        "/v1/dr/commands/alerts-1",
        headers={**bearer(), "x-ig-read-from": "secondary"},
    )
    assert read.status_code == 200, read.text


def scraped(text: str) -> dict[str, set[str]]:
    """Family name -> every label its samples carry ({} for a family with
    none yet: prometheus_client still prints its HELP and TYPE)."""
    return {
        family.name: {label for s in family.samples for label in s.labels}
        for family in text_string_to_metric_families(text)
    }


def family_of(name: str, families: dict[str, set[str]]) -> str | None:
    candidates = [name] + [name.removesuffix(s) for s in SUFFIXES if name.endswith(s)]
    return next((c for c in candidates if c in families), None)


@pytest.mark.postgres
def test_every_metric_the_rules_and_the_dashboard_read_is_scraped(
    dr_client: TestClient[Any],
) -> None:
    """Names and labels, on the app's own /metrics after the activity that
    makes its labelled series appear."""
    exercise_exports(dr_client)
    exercise_tenant(dr_client)
    exercise_dr(dr_client)
    families = scraped(dr_client.get("/metrics").text)
    problems = []
    for name, labels in sorted(used().items()):
        family = family_of(name, families)
        if family is None:
            problems.append(f"{name}: not on /metrics")
        elif labels - families[family]:
            problems.append(
                f"{name}: no sample with {sorted(labels - families[family])} "
                f"(its samples carry {sorted(families[family])})"
            )
    assert not problems, "\n".join(problems)
