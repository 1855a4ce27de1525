"""`conductor catalog gate` on fixture repositories, online and offline."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any
from uuid import UUID
from xml.etree import ElementTree as ET

import httpx
import pytest

from tests.conftest import REPO_ROOT, bearer, dataset_body
from tests.integration.server import Server, cli, cli_env

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "gate"
BLOCKED = [
    ("blocked/lineage/events.jsonl", 2, "unregistered", "ghost_table"),
    ("blocked/models/staging/schema.yml", 6, "unregistered", "payments"),
    ("blocked/services/api/conductor-datasets.yaml", 4, "unregistered", "events"),
    ("blocked/services/api/conductor-datasets.yaml", 5, "retired", "legacy_orders"),
    ("blocked/services/api/conductor-datasets.yaml", 6, "no-active-contract", "drafts"),
    (
        "blocked/services/api/conductor-datasets.yaml",
        7,
        "contract-version",
        "customers",
    ),
]
"""Every finding the blocked repository must give, in the gate's order."""


def token(tenant: str = "acme") -> str:
    scopes = ("catalog.read", "catalog.write", "audit.read")
    return bearer(tenant, *scopes)["Authorization"][7:]


def gate(
    url: str, var: Path, *args: str, tenant: str = "acme"
) -> subprocess.CompletedProcess[str]:
    """`conductor catalog gate ARGS`, run from the fixtures folder."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "catalog", "gate", *args],
        env={**cli_env(url, var), "CONDUCTOR_TOKEN": token(tenant)},
        cwd=FIXTURES,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A served Conductor: acme registers orders, customers, a retired and a
    draft-contract dataset; tenant other registers the names acme lacks."""
    root = tmp_path_factory.mktemp("gate")
    url = f"sqlite:///{root / 'var' / 'conductor.db'}"
    with (root / "serve.log").open("w") as log:
        server = Server(url, root, log, args=("--init",))
        try:
            http = httpx.Client(base_url=server.base, timeout=30)
            acme, other = bearer("acme"), bearer("other")
            for body in (
                dataset_body("orders"),
                dataset_body("customers"),
                dataset_body("legacy_orders"),
                dataset_body("drafts", contractStatus="draft"),
            ):
                assert http.post("/v1/datasets", json=body, headers=acme).is_success
            for name in ("events", "payments", "ghost_table"):
                done = http.post("/v1/datasets", json=dataset_body(name), headers=other)
                assert done.is_success
            legacy = http.get("/v1/datasets?q=legacy_orders", headers=acme).json()
            retired = http.delete(
                f"/v1/datasets/{legacy['items'][0]['id']}", headers=acme
            )
            assert retired.is_success, retired.text
            yield {"url": url, "var": root, "base": server.base, "http": http}
        finally:
            server.stop()


def findings(done: subprocess.CompletedProcess[str]) -> list[tuple[Any, ...]]:
    body = json.loads(done.stdout)
    return [(f["file"], f["line"], f["rule"], f["dataset"]) for f in body["findings"]]


def test_the_blocked_repository_fails_with_each_finding_online(
    world: dict[str, Any],
) -> None:
    """Unregistered (here and only in another tenant), retired, no active
    contract and a pinned contract the registry does not hold: exit 1."""
    done = gate(world["url"], world["var"], "blocked", "--url", world["base"])
    assert done.returncode == 1, done.stderr
    text = done.stdout.splitlines()
    assert len(text) == len(BLOCKED)
    for line, (file, number, rule, name) in zip(text, BLOCKED, strict=True):
        assert line.startswith(f"{file}:{number}: {rule}: ")
        assert repr(name) in line
    as_json = gate(
        world["url"],
        world["var"],
        "blocked",
        "--url",
        world["base"],
        "--format",
        "json",
    )
    assert as_json.returncode == 1
    assert findings(as_json) == BLOCKED


def test_offline_findings_equal_online_ones_from_a_log_and_a_slice(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """The whole exported log (with --tenant) and the tenant's slice give
    byte-identical JSON (findings and digest) to the running Conductor."""
    url, var = world["url"], world["var"]
    online = gate(
        url, var, "blocked", "clean", "--url", world["base"], "--format", "json"
    )
    log = tmp_path / "log.jsonl"
    assert cli(url, var, "audit", "export-log", "--out", str(log)).returncode == 0
    offline = gate(
        url, var, "blocked", "clean", "--log", str(log), "--tenant", "acme",
        "--format", "json",
    )  # fmt: skip
    assert offline.returncode == online.returncode == 1
    assert offline.stdout == online.stdout
    sliced = tmp_path / "slice.jsonl"
    exported = subprocess.run(
        [sys.executable, "-m", "api.cli", "audit", "export-log", "--out", str(sliced),
         "--url", world["base"]],
        env={**cli_env(url, var), "CONDUCTOR_TOKEN": token()},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    from_slice = gate(
        url, var, "blocked", "clean", "--log", str(sliced), "--tenant", "acme",
        "--format", "json",
    )  # fmt: skip
    assert from_slice.stdout == online.stdout
    # Another tenant's registry is another answer: other has events, not orders.
    other = gate(
        url, var, "blocked", "--log", str(log), "--tenant", "other", "--format", "json"
    )
    assert ("blocked/services/api/conductor-datasets.yaml", 2, "unregistered",
            "orders") in findings(other)  # fmt: skip
    assert "events" not in {f[3] for f in findings(other)}


def test_the_clean_repository_passes_online_and_offline(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """Manifest, dbt sources (with a meta.conductor rename) and an
    OpenLineage event, all registered: exit 0, no finding."""
    url, var = world["url"], world["var"]
    online = gate(url, var, "clean", "--url", world["base"], "--format", "json")
    assert online.returncode == 0, online.stderr
    body = json.loads(online.stdout)
    assert body["findings"] == []
    assert body["datasets"] == ["customers", "orders"]
    assert body["uses"] == 6
    log = tmp_path / "log.jsonl"
    assert cli(url, var, "audit", "export-log", "--out", str(log)).returncode == 0
    offline = gate(url, var, "clean", "--log", str(log), "--tenant", "acme")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == ""


def test_malformed_yaml_is_one_line_naming_the_file_and_exit_2(
    world: dict[str, Any],
) -> None:
    done = gate(world["url"], world["var"], "malformed", "--url", world["base"])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(
        "conductor catalog gate: malformed/deep/er/conductor-datasets.yaml:"
    )
    assert "malformed YAML" in lines[0]
    assert "quoted scalar (line 3)" in lines[0]
    assert done.stdout == ""


def test_a_broken_log_is_refused_not_trusted(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """An edited exported log cannot vouch for a registration."""
    url, var = world["url"], world["var"]
    log = tmp_path / "log.jsonl"
    assert cli(url, var, "audit", "export-log", "--out", str(log)).returncode == 0
    lines = log.read_text().splitlines()
    lines[2] = lines[2].replace('"Orders placed', '"Orders edited')
    assert lines[2] != log.read_text().splitlines()[2]
    log.write_text("\n".join(lines) + "\n")
    done = gate(url, var, "clean", "--log", str(log), "--tenant", "acme")
    assert done.returncode == 2
    assert "broken" in done.stderr
    assert "Traceback" not in done.stderr


def test_github_and_junit_formats(world: dict[str, Any]) -> None:
    url, var, base = world["url"], world["var"], world["base"]
    github = gate(url, var, "blocked", "--url", base, "--format", "github")
    assert github.returncode == 1
    annotations = github.stdout.splitlines()
    assert len(annotations) == len(BLOCKED)
    assert annotations[0] == (
        "::error file=blocked/lineage/events.jsonl,line=2,title=catalog gate: "
        "unregistered::dataset 'ghost_table' is not registered"
    )
    junit = gate(url, var, "blocked", "--url", base, "--format", "junit")
    assert junit.returncode == 1
    suite = ET.fromstring(junit.stdout).find("testsuite")
    assert suite is not None
    assert suite.get("tests") == "9"
    assert suite.get("failures") == str(len(BLOCKED))
    failed = [
        c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None
    ]
    assert "payments (line 6)" in failed
    assert "orders (line 2)" not in failed


def gate_runs(url: str, var: Path, tmp_path: Path) -> list[str]:
    """The ids of the CatalogGateRan events in the exported log."""
    log = tmp_path / "runs.jsonl"
    assert cli(url, var, "audit", "export-log", "--out", str(log)).returncode == 0
    records = [json.loads(line) for line in log.read_text().splitlines()[1:]]
    return [
        str(UUID(r["originatorId"]))
        for r in records
        if r["topic"].endswith(":CatalogGateRan.Ran")
    ]


def test_record_appends_a_gate_run_tenant_scoped_and_validated(
    world: dict[str, Any], tmp_path: Path
) -> None:
    """--record: one CatalogGateRan per (repo, commit, digest); another tenant
    gets 404; a bad body is a problem naming the field, and writes nothing."""
    url, var, base, http = world["url"], world["var"], world["base"], world["http"]
    args = ("blocked", "--url", base, "--record", "--repo", "acme/shop", "--commit",
            "a" * 40)  # fmt: skip
    first = gate(url, var, *args)
    assert first.returncode == 1
    recorded = [line for line in first.stderr.splitlines() if "recorded" in line]
    assert len(recorded) == 1, first.stderr
    run_id = recorded[0].split()[2]
    acme = bearer("acme", "catalog.read")
    run = http.get(f"/v1/catalog/gate-runs/{run_id}", headers=acme)
    assert run.status_code == 200, run.text
    body = run.json()
    assert body["repo"] == "acme/shop"
    assert body["findings"] == len(BLOCKED)
    assert body["failing"] == sorted({f[3] for f in BLOCKED})
    assert body["findingsDigest"].startswith("sha256:")
    assert http.get(
        f"/v1/catalog/gate-runs/{run_id}", headers=bearer("other", "catalog.read")
    ).status_code == 404  # fmt: skip
    assert gate_runs(url, var, tmp_path) == [run_id]
    again = gate(url, var, *args)
    assert f"gate run {run_id} recorded" in again.stderr
    bad = http.post(
        "/v1/catalog/gate-runs",
        json={"repo": "r", "commit": "c", "findingsDigest": "md5:x", "findings": 0,
              "datasets": []},
        headers=bearer("acme", "catalog.write"),
    )  # fmt: skip
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "findingsDigest" in bad.text
    assert gate_runs(url, var, tmp_path) == [run_id], "nothing new was appended"
    unauthorised = http.post(
        "/v1/catalog/gate-runs", json={}, headers=bearer("acme", "catalog.read")
    )
    assert unauthorised.status_code == 403
