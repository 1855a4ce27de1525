"""A tenant's slice of the global log, each entry proven against one checkpoint.

The API's log route and `conductor audit export-log --tenant` read slices the
same way: the tenancy view says which positions the tenant may see, the log
gives their events, and the Merkle tree of the whole log proves each of them
against one signed checkpoint, whose signing key is in the log (and, being
public, in every slice) before it signs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from api.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adapters.ledger.checkpoints import Checkpoint
    from api.wiring.core import Core
    from api.wiring.exports import ExportsBundle
    from application.ports import LogEntry
    from projections.tenancy import TenancyView

RUNNER = "tenancy"


@dataclass(frozen=True, slots=True)
class SlicePage:
    """Entries of a slice, their inclusion proofs, and the checkpoint of both."""

    entries: Sequence[LogEntry]
    proofs: list[dict[str, Any]]
    checkpoint: Checkpoint | None
    next_after: int | None


def tenancy_view(core: Core) -> TenancyView:
    if core.tenancy is None:  # pragma: no cover - build_services wires it
        msg = "the tenancy view is not wired in this process"
        raise RuntimeError(msg)
    return core.tenancy


def covering(core: Core, exports: ExportsBundle, position: int) -> Checkpoint:
    """The latest checkpoint if it includes ``position``, else a new one."""
    latest = core.checkpoints.latest()
    if latest is not None and latest.last_position >= position:
        return latest
    # The key goes into the log before it signs, so that a slice (which holds
    # the public key events) can check its checkpoint with nothing else.
    exports.app.record_signing_key(core.keys)
    return core.checkpoints.sign()


def pinned(core: Core, size: int) -> Checkpoint:
    """The stored checkpoint of ``size`` leaves (LookupError if there is none)."""
    checkpoint = core.checkpoints.at(size)
    if checkpoint is None:
        msg = f"no signed checkpoint of size {size}"
        raise LookupError(msg)
    return checkpoint


def slice_page(
    core: Core,
    exports: ExportsBundle,
    tenant: str,
    *,
    after: int,
    limit: int,
    checkpoint: Checkpoint | None = None,
) -> SlicePage:
    """Up to ``limit`` entries the tenant may see after ``after``, proven.

    Without ``checkpoint`` the page is proven against one covering its last
    entry; with one, it stops at that checkpoint's last position.
    """
    until = core.runners[RUNNER].position()
    if checkpoint is not None:
        until = min(until, checkpoint.last_position)
    view = tenancy_view(core)
    positions = view.slice(tenant, after=after, until=until, limit=limit)
    if checkpoint is None:
        checkpoint = _covering_page(core, exports, positions)
        if checkpoint is not None and checkpoint.last_position > until:
            # Signed just now, maybe after recording its key: a short page
            # takes the public key events too, so that it verifies alone.
            wait_for_view(core, checkpoint.last_position)
            positions = view.slice(
                tenant, after=after, until=checkpoint.last_position, limit=limit
            )
    entries = core.ledger.entries_at(positions)
    proofs = (
        core.checkpoints.inclusions([e.position for e in entries], checkpoint.size)
        if entries and checkpoint is not None
        else []
    )
    next_after = positions[-1] if len(positions) == limit else None
    return SlicePage(entries, proofs, checkpoint, next_after)


def _covering_page(
    core: Core, exports: ExportsBundle, positions: Sequence[int]
) -> Checkpoint | None:
    """A checkpoint for a page: one covering its last entry, else the latest."""
    if positions:
        return covering(core, exports, positions[-1])
    return core.checkpoints.latest()


def wait_for_view(core: Core, position: int) -> None:
    """Wait (up to the read-your-writes budget) until the view has ``position``.

    A 503 ``projection-lagging`` problem if it does not, as x-ig-min-position
    answers: a slice must never silently miss the tenant's committed events.
    """
    runner = core.runners[RUNNER]
    if runner.wait(position, core.settings.min_position_wait_s):
        return
    status = runner.status()
    raise Problem(
        503,
        f"the {runner.name} view is at position {status.position}, "
        f"behind the log's {position}",
        kind="projection-lagging",
        title="The read model has not caught up yet",
        headers={"Retry-After": "1"},
        position=status.position,
        minPosition=position,
    )


def log_tip(core: Core) -> int:
    """The log's last position (cheaper than its head, which counts events)."""
    return core.ledger.recorder.max_notification_id() or 0
