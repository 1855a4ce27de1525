"""Imports flow one way: api -> application -> domain; adapters/projections plug in."""

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
