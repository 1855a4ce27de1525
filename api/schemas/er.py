"""ER request and response bodies (msgspec, camelCase, unknown fields refused)."""

from __future__ import annotations

from datetime import datetime  # noqa: TC003 - msgspec resolves at runtime
from typing import Annotated
from uuid import UUID  # noqa: TC003 - msgspec resolves at runtime

import msgspec

from api.schemas.base import In, Out

Value = Annotated[str, msgspec.Meta(max_length=200)]


class RecordIn(In):
    id: str
    fields: dict[str, Value]


class ResolveRequest(In):
    entity_set: str
    records: list[RecordIn]
    k: Annotated[int, msgspec.Meta(ge=1, le=100)] | None = None


class PairOut(Out, frozen=True):
    left: str
    right: str
    via: str
    """blocking, ann or both: where the candidate came from."""
    score: int
    merged: bool


class ResolveOut(Out, frozen=True):
    resolution_id: UUID
    position: int | None
    records: int
    blocking_pairs: int
    ann_pairs: int
    candidate_pairs: int
    merge_at: float
    gate_digest: str
    pairs: list[PairOut]


class NeighbourOut(Out, frozen=True):
    record_id: str
    similarity: float


class CandidatesOut(Out, frozen=True):
    record_id: str
    entity_set: str
    index_position: int
    neighbours: list[NeighbourOut]


class JobCreate(In):
    entity_set: str
    location: str
    id_column: str = "rec_id"
    force: bool = False


class JobOut(Out, frozen=True):
    id: UUID
    entity_set: str
    status: str
    records: int
    done: int
    forced: bool
    run_after: datetime
    attempt: int = 0
    """Runs started so far: 0 while scheduled; above 1 when a lost run was
    resumed elsewhere (its lease expired)."""
    position: int | None = None
    vectors_sha256: str | None = None
    failure: str | None = None


class JobPage(Out, frozen=True):
    items: list[JobOut]
    """The tenant's jobs, newest first (``position``: the job's last event)."""
    next: str | None
    """Opaque cursor for the next page (pass as ?after=); null at the end."""


class ResolutionOut(Out, frozen=True):
    """One resolve batch: counts and the gate's digest (no record ids or values)."""

    id: UUID
    entity_set: str
    records: int
    candidate_pairs: int
    pairs_proposed: int
    """Pairs recorded as MergeProposed (near or over the threshold)."""
    pairs_decided: int
    merges: int
    """Decided pairs the gate merged."""
    gate_digest: str
    position: int
    """Log position of the resolution's last event."""


class ResolutionPage(Out, frozen=True):
    items: list[ResolutionOut]
    """The tenant's resolutions, newest first."""
    next: str | None
    """Opaque cursor for the next page (pass as ?after=); null at the end."""
