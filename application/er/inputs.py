"""ER inputs and outputs: the rules a batch must obey, the knobs, the ports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID  # noqa: TC003 - a dataclass field

from domain.errors import FieldViolation, ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from datetime import datetime

    from application.er.rules import Blocking, Gate
    from application.ports import (
        Embedder,
        JobQueue,
        NearestNeighbours,
        RecordFiles,
        SourceFiles,
        VectorIndex,
        VectorStore,
    )

_SET = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_ID = 128
MAX_VALUE = 200


@dataclass(frozen=True, slots=True)
class ErRecord:
    """One record of a batch: its id and field values (held in memory only)."""

    id: str
    fields: Mapping[str, str]


def check_entity_set(name: str, path: str = "entitySet") -> list[FieldViolation]:
    if _SET.fullmatch(name):
        return []
    return [
        FieldViolation(
            path, "pattern", "1-64 of a-z, 0-9, '_' or '-', starting alphanumeric"
        )
    ]


def check_records(
    records: Sequence[ErRecord], *, known: Iterable[str], max_batch: int
) -> list[FieldViolation]:
    """Ids present, unique and short; only known fields; short values."""
    problems: list[FieldViolation] = []
    if not 1 <= len(records) <= max_batch:
        problems.append(
            FieldViolation("records", "length", f"send 1 to {max_batch} records")
        )
    allowed = frozenset(known)
    seen: set[str] = set()
    for n, record in enumerate(records):
        at = f"records[{n}]"
        if not record.id or len(record.id) > MAX_ID or _CONTROL.search(record.id):
            problems.append(
                FieldViolation(f"{at}.id", "length", f"1-{MAX_ID} printable characters")
            )
        elif record.id in seen:
            problems.append(
                FieldViolation(f"{at}.id", "unique", "ids must be unique in a batch")
            )
        seen.add(record.id)
        for name, value in record.fields.items():
            if name not in allowed:
                problems.append(
                    FieldViolation(
                        f"{at}.fields.{name}",
                        "unknown-field",
                        "known fields: " + ", ".join(sorted(allowed)),
                    )
                )
            elif len(value) > MAX_VALUE:
                problems.append(
                    FieldViolation(
                        f"{at}.fields.{name}", "length", f"at most {MAX_VALUE} chars"
                    )
                )
        if len(problems) >= 20:
            break
    return problems


def require(problems: list[FieldViolation]) -> None:
    if problems:
        raise ValidationError(problems)


def as_columns(
    records: Sequence[ErRecord], fields: Iterable[str]
) -> dict[str, list[str]]:
    """Field -> values in record order ("" where a record lacks the field)."""
    return {f: [r.fields.get(f, "") for r in records] for f in fields}


@dataclass(frozen=True)
class ErPolicy:
    """The knobs: K, blocking, the gate, the cap, the off-peak schedule."""

    k: int
    blocking: Blocking
    gate: Gate
    cap_records_per_day: int
    max_batch: int
    next_window: Callable[[datetime], datetime]
    """The start of the next off-peak window at or after a moment."""
    clock: Callable[[], datetime]
    lease_s: float = 60.0
    """How long a job run's lease lasts unless renewed (each chunk renews it
    once a third of it has passed): a run lost this long is taken over."""
    max_attempts: int = 3
    """Runs a job may start: one lost this many times fails (``lost-runs``)
    instead of being resumed for ever (a run that always crashes)."""


@dataclass(frozen=True, slots=True)
class PairDecision:
    left: str
    right: str
    via: str
    score: int
    merged: bool


@dataclass(frozen=True)
class ResolveResult:
    resolution_id: UUID
    position: int | None
    blocking_pairs: int
    ann_pairs: int
    pairs: list[PairDecision]


@dataclass(frozen=True)
class Ports:
    embedder: Embedder
    store: VectorStore
    index: VectorIndex
    neighbours: NearestNeighbours
    sources: SourceFiles
    files: RecordFiles
    queue: JobQueue
