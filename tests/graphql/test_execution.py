"""The plain-field short cut answers exactly what graphql-core's general path
answers: values, nulls, errors (api.graphql.execution)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import strawberry
from graphql import Undefined

from api.graphql import execution
from api.graphql.execution import ConductorExecution, plan_of

ROW_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


@strawberry.type
class Item:
    id: strawberry.ID
    name: str
    count: int
    tags: list[str]
    note: str | None
    maybe_tags: list[str] | None

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


def _items() -> list[Item]:
    good = Item(
        id=ROW_ID,  # type: ignore[arg-type] - a UUID coerces as an ID
        name="a",
        count=3,
        tags=["x", "y"],
        note=None,
        maybe_tags=None,
    )
    broken_count = Item(
        id=strawberry.ID("2"), name="b", count="many", tags=(), note="n", maybe_tags=[]
    )  # type: ignore[arg-type]
    null_name = Item(
        id=strawberry.ID("3"),
        name=None,
        count=1,
        tags=["z"],
        note=None,
        maybe_tags=["q"],
    )  # type: ignore[arg-type]
    null_tag = Item(
        id=strawberry.ID("4"),
        name="d",
        count=1,
        tags=["z", None],
        note=None,
        maybe_tags=None,
    )  # type: ignore[list-item]
    return [good, broken_count, null_name, null_tag]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return _items()  # type: ignore[return-value]


DOCUMENT = "{ items { id name count tags note maybeTags shout } }"


def _run(execution: Any) -> dict[str, Any]:
    schema = strawberry.Schema(query=Query, execution_context_class=execution)
    result = schema.execute_sync(DOCUMENT)
    return {
        "data": result.data,
        "errors": sorted((e.message, tuple(e.path or ())) for e in result.errors or ()),
    }


def test_the_short_cut_answers_as_the_general_path_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same data and same errors (a value that does not coerce, a null in a
    non-null field, a null item in a list of non-null) with and without it;
    the short cut answered the plain values itself."""
    general = _run(None)
    answered: list[str] = []
    plain = execution._answer

    def counted(plan: Any, source: Any) -> Any:
        value = plain(plan, source)
        if value is not Undefined:
            answered.append(plan[0])
        return value

    monkeypatch.setattr(execution, "_answer", counted)
    short = _run(ConductorExecution)
    assert short == general
    assert answered.count("id") == 4
    assert "note" not in answered  # null: the general path decides
    assert short["data"]["items"][0] == {
        "id": str(ROW_ID),
        "name": "a",
        "count": 3,
        "tags": ["x", "y"],
        "note": None,
        "maybeTags": None,
        "shout": "A",
    }
    assert len(general["errors"]) == 3


@pytest.mark.parametrize(
    ("field", "planned"),
    [("name", True), ("tags", True), ("note", True), ("shout", False)],
)
def test_only_plain_scalar_fields_take_the_short_cut(field: str, planned: bool) -> None:
    """A resolver (or an @auth field extension) keeps the general path."""
    schema = strawberry.Schema(query=Query)
    item = schema._schema.type_map["Item"]
    assert (plan_of(item.fields[field]) is not None) is planned  # type: ignore[attr-defined]
