"""DR drills as Failover aggregates in the shared log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from application.base import LedgerApplication
from domain.dr.failover import Failover

if TYPE_CHECKING:
    from uuid import UUID


class Drills(LedgerApplication):
    """Records each step of a drill as it happens."""

    name = "ledger"

    def start_drill(
        self, *, mode: str, sync: bool, primary: str, standby: str
    ) -> Failover:
        """Open a drill and record DrillStarted."""
        drill = Failover.start(mode=mode, sync=sync, primary=primary, standby=standby)
        self.save(drill)
        return drill

    def record(self, drill: Failover) -> int | None:
        """Save the drill's pending step events; return the last position."""
        recordings = self.save(drill)
        return recordings[-1].notification.id if recordings else None

    def load_drill(self, drill_id: UUID) -> Failover:
        drill: Failover = self.repository.get(drill_id)
        return drill
