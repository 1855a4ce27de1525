"""Walking the hash chain: the first broken position, or how much was checked."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.ledger.chain import GENESIS, row_hash

if TYPE_CHECKING:
    from collections.abc import Callable

    from adapters.ledger.store import ChainedRecorder


@dataclass(frozen=True)
class ChainReport:
    """Outcome of a walk: events checked, and the first break if any."""

    checked: int
    seconds: float
    head_position: int
    head_hash: str
    broken_at: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None

    @property
    def rate(self) -> float:
        return self.checked / self.seconds if self.seconds > 0 else float("inf")


def verify_chain(  # noqa: C901 - one walk; each check names where it fails
    recorder: ChainedRecorder,
    *,
    start: int = 1,
    page: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
) -> ChainReport:
    """Recompute every hash from position ``start`` on and check the links.

    From position 1 the first link must be the genesis hash; from a later
    position the walk trusts that event's stored prev_hash as its anchor.
    """
    began = time.perf_counter()
    checked = 0
    prev: str | None = GENESIS if start <= 1 else None
    last = start - 1

    def broken(position: int, reason: str) -> ChainReport:
        return ChainReport(
            checked, time.perf_counter() - began, last, prev or "", position, reason
        )

    while True:
        rows = recorder.chain_rows(after=last, limit=page)
        if not rows:
            break
        for position, oid, version, topic, state, prev_hash, stored in rows:
            if not stored:
                return broken(position, "event has no chain record")
            if prev is not None and prev_hash != prev:
                gone = recorder.chain_positions(last, position)
                if gone:
                    return broken(gone[0], "event is missing from the log")
                return broken(position, "prev_hash does not match the previous event")
            if (
                row_hash(position, oid, version, topic, bytes(state), prev_hash)
                != stored
            ):
                return broken(position, "event content does not match its hash")
            prev = stored
            last = position
            checked += 1
        if progress is not None:
            progress(checked, last)
    trailing = recorder.chain_positions(last, 2**62)
    if trailing:
        return broken(trailing[0], "event is missing from the log")
    return ChainReport(checked, time.perf_counter() - began, last, prev or GENESIS)
