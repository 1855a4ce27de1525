"""Every Cypher statement of the Neo4j lineage view stays inside its namespace.

Neo4j cannot run here (tests/integration/test_neo4j_lineage.py runs against a
server when NEO4J_URI is set); this reads the statements the module sends.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import adapters.catalog.lineage_neo4j as module
from adapters.catalog.lineage_neo4j import SCHEMA, Neo4jLineageView

SOURCE = Path(module.__file__).read_text()


LABELLED = re.compile(r"\((\w*):(?:Dataset|ConductorTracking)\b([^)]*)\)")
"""A node pattern with one of the view's labels: its variable and the rest."""


def _bodies() -> dict[str, str]:
    """Each function's source without its docstring (where the Cypher is)."""
    found = {}
    for node in ast.walk(ast.parse(SOURCE)):
        if isinstance(node, ast.FunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
            ):
                body = body[1:]
            found[node.name] = "\n".join(
                ast.get_source_segment(SOURCE, part) or "" for part in body
            )
    return found


def test_every_node_pattern_names_the_namespace() -> None:
    """A labelled node is matched with ``{ns: $ns ...}``, or its variable is
    constrained by ``<var>.ns = $ns`` in the same function."""
    checked = 0
    for name, body in _bodies().items():
        for var, rest in LABELLED.findall(body):
            checked += 1
            scoped = "ns: $ns" in rest or (var and f"{var}.ns = $ns" in body)
            assert scoped, f"{name}: ({var}:...{rest}) is not namespaced"
    assert checked >= 10


def test_the_reset_deletes_only_the_namespace() -> None:
    reset = ast.get_source_segment(
        SOURCE,
        next(
            n
            for n in ast.walk(ast.parse(SOURCE))
            if isinstance(n, ast.FunctionDef) and n.name == "reset"
        ),
    )
    assert reset is not None
    assert "MATCH (d:Dataset) DETACH DELETE" not in reset
    assert "MATCH (d:Dataset {ns: $ns}) DETACH DELETE d" in reset


def test_the_key_and_the_tenant_index_are_namespaced() -> None:
    joined = " ".join(SCHEMA)
    assert "REQUIRE (d.ns, d.id) IS UNIQUE" in joined
    assert "ON (d.ns, d.tenant)" in joined
    assert "DROP CONSTRAINT conductor_dataset_id IF EXISTS" in joined


def test_an_empty_namespace_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace"):
        Neo4jLineageView(driver=None, namespace="")  # type: ignore[arg-type]
