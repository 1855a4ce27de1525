"""Log and ledger bodies: entries, pages, checkpoints, proofs and keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID  # noqa: TC003 - msgspec resolves at runtime

import msgspec

from api.schemas.base import Out

if TYPE_CHECKING:
    from application.ports import LogEntry


class InclusionOut(Out, frozen=True):
    """RFC 9162 inclusion proof of one entry's chain hash (the leaf)."""

    leaf_index: int
    tree_size: int
    proof: list[str]


class LogEntryOut(Out, frozen=True, omit_defaults=True):
    position: int
    originator_id: UUID
    version: int
    topic: str
    state: Any
    prev_hash: str
    hash: str
    inclusion: InclusionOut | None = None
    """In a tenant's slice: proof against the page's checkpoint."""


class LogHeadOut(Out, frozen=True):
    position: int
    hash: str
    events: int


class CheckpointOut(Out, frozen=True):
    """A signed tree head of the whole log (its DSSE envelope is the proof)."""

    size: int
    root_hash: str
    last_position: int
    envelope: dict[str, Any]


class LogPage(Out, frozen=True, omit_defaults=True):
    entries: list[LogEntryOut]
    head: LogHeadOut
    """The global log's head, whoever reads (like a CT tree head)."""
    next_after: int | None
    next: str | None
    """The cursor of the next page (the last position, as text); null at the end."""
    tenant: str | None = None
    """Whose slice this page is (absent: the whole log)."""
    checkpoint: CheckpointOut | None = None
    """The signed checkpoint every entry of a slice is proven against."""


class KeyOut(Out, frozen=True):
    keyid: str
    public_key_pem: str
    created_at: str
    active: bool


class KeysOut(Out, frozen=True):
    keys: list[KeyOut]


def entry_out(entry: LogEntry) -> LogEntryOut:
    """One log entry as the API shows it (its state decoded)."""
    return LogEntryOut(
        position=entry.position,
        originator_id=entry.originator_id,
        version=entry.version,
        topic=entry.topic,
        state=msgspec.json.decode(entry.state),
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )
