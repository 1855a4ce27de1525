"""Depth, cost, aliases, size, hostile documents and introspection: each refused
before any resolver runs, with a code, and the log head unchanged."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import pytest
from litestar.testing import TestClient

from api.app import create_app
from tests.graphql.support import codes, gql, log_head, register

if TYPE_CHECKING:
    from api.settings import Settings

pytestmark = pytest.mark.integration

FIELDS = "id name"
REGISTER = (
    '{name: "x%d", license: "L", purpose: ["investigation"], retention: "P1Y", '
    'region: "EU", contractVersion: "v1"}'
)


def _deep(levels: int) -> str:
    inner = "name"
    for _ in range(levels):
        inner = f"upstream {{ {inner} }}"
    return f"{{ datasets {{ {inner} }} }}"


def _fragment_chain(levels: int) -> str:
    """Fragments spreading fragments, each a level deeper (depth refused)."""
    parts = ["{ datasets { ...F0 } }"]
    parts += [
        f"fragment F{n} on Dataset {{ upstream {{ ...F{n + 1} }} }}"
        for n in range(levels)
    ]
    parts.append(f"fragment F{levels} on Dataset {{ name }}")
    return "\n".join(parts)


def _fragment_fan(levels: int) -> str:
    """Each fragment spreads the next twice under a list: 2^levels objects."""
    parts = ["{ datasets(first: 200) { ...G0 } }"]
    parts += [
        f"fragment G{n} on Dataset {{ upstream {{ ...G{n + 1} }} "
        f"downstream {{ ...G{n + 1} }} }}"
        for n in range(levels)
    ]
    parts.append(f"fragment G{levels} on Dataset {{ name }}")
    return "\n".join(parts)


HOSTILE: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("malformed", "{ datasets { id ", None, "bad-request"),
    ("not-graphql", "SELECT * FROM datasets", None, "bad-request"),
    ("unknown-field", "{ datasets { password } }", None, "validation"),
    (
        "alias-fan-out",
        "{ " + " ".join(f"a{n}: datasets {{ id }}" for n in range(200)) + " }",
        None,
        "query-too-complex",
    ),
    (
        "mutation-alias-fan-out",
        "mutation { "
        + " ".join(f"m{n}: registerDataset(input: {REGISTER % n})" for n in range(40))
        + " }",
        None,
        "query-too-complex",
    ),
    ("too-deep", _deep(12), None, "query-too-deep"),
    ("deep-fragments", _fragment_chain(12), None, "query-too-deep"),
    ("fragment-fan-out", _fragment_fan(8), None, "query-too-complex"),
    (
        "too-costly-pages",
        "{ a: datasets(first: 200) { upstream { downstream { upstream { id } } } } }",
        None,
        "query-too-complex",
    ),
    (
        "fragment-cycle",
        "{ datasets { ...A } } fragment A on Dataset { upstream { ...B } } "
        "fragment B on Dataset { downstream { ...A } }",
        None,
        "validation",
    ),
    (
        "wrong-type-variable",
        "mutation($input: DatasetInput!) { registerDataset(input: $input) }",
        {"input": "not an object"},
        "validation",
    ),
    (
        "wrong-type-field-in-variable",
        "mutation($input: DatasetInput!) { registerDataset(input: $input) }",
        {"input": {"name": 5, "license": "L", "purpose": "x"}},
        "validation",
    ),
    (
        "missing-variable",
        "mutation($input: DatasetInput!) { registerDataset(input: $input) }",
        {},
        "validation",
    ),
    (
        "huge-token-count",
        "{ datasets { " + " ".join(["id"] * 6000) + " } }",
        None,
        "query-too-complex",
    ),
    (
        "page-above-ceiling",
        "mutation { registerDataset(input: %s) } " % (REGISTER % 1)
        + "query Q { datasets(first: 100000) { id } }",
        None,
        "validation",  # two operations and no operationName: refused
    ),
]


@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [pytest.param(q, v, c, id=name) for name, q, v, c in HOSTILE],
)
def test_hostile_documents_are_refused_and_write_nothing(
    client: TestClient[Any],
    query: str,
    variables: dict[str, Any] | None,
    code: str,
) -> None:
    """An error with a code, no data, and the log exactly as it was."""
    register(client, "orders")
    before = log_head(client)
    answer = gql(client, query, variables)
    assert answer.get("data") is None, answer
    assert code in codes(answer), answer
    assert log_head(client) == before


def test_a_cost_refusal_names_the_cost_and_the_limit(
    client: TestClient[Any],
) -> None:
    """extensions carry the computed cost and the limit."""
    answer = gql(
        client, "{ datasets(first: 200) { upstream { upstream { upstream { id } } } } }"
    )
    [error] = answer["errors"]
    assert error["extensions"]["code"] == "query-too-complex"
    assert error["extensions"]["cost"] > error["extensions"]["limit"] == 10_000


def test_introspection_is_on_by_default_and_off_by_setting(
    client: TestClient[Any], settings: Settings
) -> None:
    """CONDUCTOR_GRAPHQL_INTROSPECTION=false refuses __schema."""
    query = "{ __schema { queryType { name } } }"
    assert gql(client, query)["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    closed = msgspec.structs.replace(settings, graphql_introspection=False)
    with TestClient(create_app(closed)) as other:
        answer = gql(other, query)
        assert answer.get("data") is None
        assert set(codes(answer)) == {"introspection-disabled"}
        assert gql(other, "{ datasets { id } }")["data"] == {"datasets": []}
