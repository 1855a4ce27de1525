"""What each DLP preset does to each classification, read off the engine's own
decision table (``plan_column``), so the description cannot drift from it."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.exports.dlp.engine import PRESETS
from adapters.exports.dlp.errors import UnclassifiedColumnError
from adapters.exports.dlp.masks import plan_column
from domain.values import CLASSIFICATIONS

UNCLASSIFIED = "(unclassified)"
"""The row for a column the dataset declares no classification for."""

ACTIONS = {
    "passed": "copied as is",
    "dropped": "the column is left out",
    "dropped_unclassified": "the column is left out (no classification)",
    "emptied": "kept, every value emptied",
    "generalized": "the date of birth becomes its year",
    "redacted": "free text with every recognised PII span replaced",
    "masked": "a readable mask (e.g. j***@example.com)",
    "tokenized": "a keyed HMAC token, stable within the export's context",
    "refused": "the export is refused: every column must be classified",
}
"""Each report label in words."""

PLATFORM_DENIED = frozenset({"none"})
"""Presets the platform floor always denies (application/exports/policies)."""


@dataclass(frozen=True)
class ColumnAction:
    action: str
    """The engine's report label (``tokenized``, ``masked``, ...)."""
    meaning: str
    rescanned: bool
    """Whether output values are re-scanned for residual PII."""


@dataclass(frozen=True)
class Preset:
    name: str
    always_denied: bool
    columns: dict[str, ColumnAction]


def describe_presets() -> list[Preset]:
    """Every preset, and for each classification what the engine does."""
    return [
        Preset(
            name=preset,
            always_denied=preset in PLATFORM_DENIED,
            columns={
                label: _action(preset, label)
                for label in (*sorted(CLASSIFICATIONS), UNCLASSIFIED)
            },
        )
        for preset in PRESETS
    ]


def _action(preset: str, classification: str) -> ColumnAction:
    given = None if classification == UNCLASSIFIED else classification
    try:
        column = plan_column("c", given, preset, key=b"describe", context="")
    except UnclassifiedColumnError:
        return ColumnAction("refused", ACTIONS["refused"], rescanned=False)
    return ColumnAction(column.label, ACTIONS[column.label], rescanned=column.scan)
