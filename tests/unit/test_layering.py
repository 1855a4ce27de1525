"""Imports flow one way: api -> application -> domain; adapters/projections plug in.

Inside each layer, modules are grouped by capability; a capability reaches
another only through a shared module or along a declared edge.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {
    "domain": {"domain"},
    "application": {"domain", "application"},
    "projections": {"domain", "projections"},
    "adapters": {"domain", "application", "projections", "adapters"},
    "api": {"domain", "application", "projections", "adapters", "api"},
}
THIRD_PARTY_BANNED = {
    "domain": {"litestar", "psycopg", "sqlite3", "structlog", "msgspec", "neo4j", "os"},
    "application": {"litestar", "psycopg", "sqlite3"},
    "projections": {"litestar"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    """No layer reaches into one above it or into a banned framework."""
    problems = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in imports(path):
            if name in ALLOWED and name not in ALLOWED[layer]:
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
            if name in THIRD_PARTY_BANNED.get(layer, set()):
                problems.append(f"{path.relative_to(ROOT)} imports {name}")
    assert problems == []


def test_no_relative_imports_anywhere() -> None:
    """Absolute imports only (the house style)."""
    offenders = [
        str(path.relative_to(ROOT))
        for layer in ALLOWED
        for path in (ROOT / layer).rglob("*.py")
        if any(
            isinstance(n, ast.ImportFrom) and n.level > 0
            for n in ast.walk(ast.parse(path.read_text()))
        )
    ]
    assert offenders == []


# ------------------------------------------------------------- capabilities

CAPABILITIES = {
    "catalog",
    "exports",
    "audit",
    "er",
    "dr",
    "autopilot",
    "ops",
}
"""The product's capabilities: a folder (or, in api/ and projections/, a
module) of each layer is named for one of them."""

SHARED_PACKAGES = {"ledger", "sql", "signing"}
"""Shared by every capability: the log itself, SQL plumbing, keys and secrets."""

SHARED_MODULES = {
    "domain.values",
    "domain.errors",
    "application.base",
    "application.ports",
    "adapters.catalog.datafiles",  # the tenants' data root: coverage, exports, ER
    "projections.runner",
    "api.schemas.base",
    "api.middleware.body_limits",
    "api.cli.progress",
    "api.graphql.auth",  # the @auth directive and its one enforcing extension
    "api.graphql.context",  # per-request context and DataLoaders
    "api.graphql.limits",  # depth, cost and alias limits
}
"""Named modules any capability may import (besides the layer roots)."""

COMPOSITION = {
    "api.bootstrap",
    "api.app",
    "api.cli.main",
    "api.runtime.jobs",
    "api.wiring.jobs",
    "api.graphql.schema",  # joins the capabilities' GraphQL root types
}
"""Where capabilities are wired together (the jobs bind guards across them)."""

API_MODULES = {
    # api/<role>/<module>: the module names its capability
    "budget": "autopilot",
    "incidents": "autopilot",
    "shaping": "autopilot",
    "autopilot_sim": "autopilot",
    "datasets": "catalog",
    "gate": "catalog",  # api/cli/gate.py: the catalog CI gate
    "evidence": "audit",  # api/cli/evidence.py: the release's evidence bundle
    "ledger": "audit",
    "log": "audit",
    "log_slice": "audit",
    "audit_slice": "audit",
    "export_worker": "exports",
    "policies": "exports",
    "er_jobs": "er",
    "switches": "ops",
    "dr_drill": "dr",
    "dr_load": "dr",
    "dr_server": "dr",
    "dataset_forms": "catalog",  # api/console: the catalog's register/amend pages
    "lineage_svg": "catalog",
    "export_form": "exports",  # api/console: the export request form
    "export_proof": "exports",  # api/console: the export page's verify panel
    "export_reasons": "exports",  # api/console: a denial's reasons in words
}
PROJECTIONS = {
    "catalog": "catalog",
    "catalog_state": "catalog",
    "coverage": "catalog",
    "gate_runs": "catalog",
    "lineage": "catalog",
    "exports": "exports",
    "tenancy": "audit",
    "er": "er",
    "usage": "autopilot",
    "burn": "autopilot",
    "dr_state": "dr",
}

EDGES = {
    ("audit", "exports"): "auditors replay export decisions and check proofs",
    ("audit", "dr"): "`conductor verify` checks signed drill evidence; the CLI "
    "opens the log on the DR pair's primary",
    ("audit", "ops"): "the tenancy projection places switch events",
    ("audit", "er"): "auditors see the ER evaluations (the recall evidence) in a log",
    ("catalog", "audit"): "a dataset's history is a page of log entries",
    ("catalog", "dr"): "x-ig-read-from: a standby region may serve catalog reads",
    ("catalog", "exports"): "a dataset's page lists the exports of that dataset",
    ("exports", "dr"): "x-ig-read-from: a standby region may serve export reads",
    ("exports", "audit"): "the console's export page runs the auditor's proof check",
    ("dr", "catalog"): "a standby region serves the catalog and lineage",
    ("dr", "exports"): "a standby region serves the exports read model",
    ("dr", "autopilot"): "drill runs are metered against the budget",
    ("exports", "catalog"): "an export is of a registered dataset",
    ("exports", "autopilot"): "export runs are metered (bytes out)",
    ("ops", "dr"): "switches are written to the log on the DR pair's primary",
}
"""The only cross-capability imports, each with its reason. A new one fails
the test: route it through application/ports.py or a shared module, or
declare the edge here with the reason."""


def capability(module: str) -> str | None:
    """The capability a dotted module belongs to (None: shared or a root)."""
    parts = module.split(".")
    shared = any(module == m or module.startswith(f"{m}.") for m in SHARED_MODULES)
    if shared or parts[0] not in ALLOWED or len(parts) < 2:
        return None
    if parts[0] == "projections":
        return PROJECTIONS.get(parts[1])
    if parts[0] == "api":
        if len(parts) < 3:
            return None
        name = API_MODULES.get(parts[2], parts[2])
        return name if name in CAPABILITIES else None
    return parts[1] if parts[1] in CAPABILITIES else None


def _module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_every_layer_folder_is_a_capability_or_shared() -> None:
    """A newcomer goes from a capability's name to its folder in every layer."""
    strays = [
        str(folder.relative_to(ROOT))
        for layer in ALLOWED
        for folder in (ROOT / layer).iterdir()
        if folder.is_dir()
        and (folder / "__init__.py").exists()
        and folder.name not in CAPABILITIES | SHARED_PACKAGES
        and layer != "api"
    ]
    assert strays == []
    for name in ("catalog", "exports", "er", "dr", "autopilot"):
        assert (ROOT / "domain" / name).is_dir(), name
        assert (ROOT / "application" / name).is_dir(), name
        assert (ROOT / "adapters" / name).is_dir(), name


def test_a_capability_reaches_another_only_through_shared_modules() -> None:
    """No new cross-capability import: only the declared edges cross."""
    crossings: dict[tuple[str, str], list[str]] = {}
    for layer in ALLOWED:
        for path in sorted((ROOT / layer).rglob("*.py")):
            module = _module_of(path)
            mine = capability(module)
            if mine is None or module in COMPOSITION:
                continue
            for name in sorted(_imported(path)):
                theirs = capability(name)
                if theirs is not None and theirs != mine:
                    crossings.setdefault((mine, theirs), []).append(
                        f"{module} imports {name}"
                    )
    undeclared = {edge: found for edge, found in crossings.items() if edge not in EDGES}
    assert undeclared == {}
    unused = sorted(set(EDGES) - set(crossings))
    assert unused == [], "declared edges nothing crosses any more: drop them"


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("domain.exports.export", "exports"),
        ("application.autopilot.slo_guards", "autopilot"),
        ("adapters.exports.dlp.engine", "exports"),
        ("api.controllers.budget", "autopilot"),
        ("api.cli.er", "er"),
        ("projections.tenancy", "audit"),
        ("adapters.ledger.chain", None),
        ("domain.values", None),
        ("api.problems", None),
    ],
)
def test_modules_are_placed_by_capability(module: str, expected: str | None) -> None:
    assert capability(module) == expected
