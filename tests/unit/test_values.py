"""Field rules of a dataset spec: each broken rule is named with its field."""

from __future__ import annotations

import dataclasses

import pytest

from domain.errors import ValidationError
from domain.values import Column, DatasetSpec, is_iso_duration

REGIONS = frozenset({"US", "EU", "UK"})
GOOD = DatasetSpec(
    name="orders",
    license="Restricted-TOS",
    purposes=("investigation",),
    retention="P1Y",
    region="EU",
    contract_version="v1",
)


def violations(**overrides: object) -> list[tuple[str, str]]:
    spec = dataclasses.replace(GOOD, **overrides)  # type: ignore[arg-type]
    try:
        spec.validate(regions=REGIONS)
    except ValidationError as error:
        return [(v.field, v.rule) for v in error.violations]
    return []


@pytest.mark.parametrize(
    "value",
    ["P1Y", "P18M", "P2W", "P90D", "PT12H", "P1Y2M10DT2H30M", "PT1S", "indefinite"],
)
def test_retention_accepts_iso_durations_and_indefinite(value: str) -> None:
    """Retention is a non-zero ISO-8601 duration or 'indefinite'."""
    assert violations(retention=value) == []


@pytest.mark.parametrize("value", ["P0D", "P", "PT", "1 year", "P1.5Y", "-P1D", "P1H"])
def test_retention_refuses_anything_else(value: str) -> None:
    """Zero, empty, prose, fractions and misplaced designators are refused."""
    assert violations(retention=value) == [("retention", "iso8601-duration")]


def test_is_iso_duration_rejects_all_zero_components() -> None:
    """P0Y0M0D parses but retains nothing, so it is not a retention."""
    assert not is_iso_duration("P0Y0M0D")
    assert is_iso_duration("P0Y1D")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"purposes": ()}, [("purposes", "non-empty")]),
        ({"purposes": ("a", "a")}, [("purposes[1]", "unique")]),
        ({"purposes": ("bad purpose",)}, [("purposes[0]", "pattern")]),
        ({"name": ""}, [("name", "required")]),
        ({"name": "x" * 129}, [("name", "max-length")]),
        ({"name": "../etc"}, [("name", "pattern")]),
        ({"license": "MIT\x00"}, [("license", "no-control-characters")]),
        ({"description": "line one\nline two"}, []),
        ({"description": "bell\x07"}, [("description", "no-control-characters")]),
        ({"description": "x" * 4001}, [("description", "max-length")]),
        ({"tags": ("a", "a")}, [("tags[1]", "unique")]),
        ({"contract_status": "maybe"}, [("contract_status", "allowed-value")]),
        ({"location": "/etc/passwd"}, [("location", "relative-path")]),
        ({"location": "a/../../b.csv"}, [("location", "relative-path")]),
        ({"location": "data.exe"}, [("location", "allowed-suffix")]),
        ({"location": "raw/orders.jsonl"}, []),
        (
            {"columns": (Column("a", "public"), Column("a", "secret"))},
            [("columns[1].name", "unique")],
        ),
        (
            {"columns": (Column("a", "pii.ssn"),)},
            [("columns[0].classification", "allowed-classification")],
        ),
    ],
)
def test_each_rule_names_its_field(
    overrides: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    """Every rule reports the field path and the rule id."""
    assert violations(**overrides) == expected


def test_every_broken_rule_is_reported_at_once() -> None:
    """A client fixes everything in one round trip."""
    found = violations(name="", region="XX", retention="soon", purposes=())
    assert {f for f, _ in found} == {"name", "region", "retention", "purposes"}
