"""The backout switches: set by operators, honoured by every process.

The state lives in the log (domain.ops.switches.Switchboard). Each process keeps
the last state it loaded and looks at the aggregate's latest version (one
indexed row) at most every ``refresh_s``, so a switch set through any process
takes effect everywhere within that time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError

from application.base import LedgerApplication
from domain.ops.switches import BACKOUTS, Switchboard

if TYPE_CHECKING:
    from collections.abc import Callable

    from application.ports import EventLog


@dataclass(frozen=True, slots=True)
class SwitchState:
    """One switch: engaged or not, and by whom and why if it is."""

    name: str
    engaged: bool
    by: str = ""
    reason: str = ""

    @property
    def effect(self) -> str:
        return BACKOUTS[self.name]


class Switches(LedgerApplication):
    """Engage and release backouts; read them cheaply on every request."""

    def __init__(
        self,
        log: EventLog,
        *,
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(log)
        self.refresh_s = refresh_s
        self._clock = clock
        self._lock = threading.Lock()
        self._version = 0
        self._engaged: dict[str, tuple[str, str]] = {}
        self._checked = float("-inf")

    def set(self, switch: str, *, on: bool, by: str, reason: str) -> int | None:
        """Engage (``on``) or release a switch; the position, None if no change."""
        board = self._load(Switchboard.create_id())
        if not isinstance(board, Switchboard):
            board = Switchboard()
        if not board.set(switch, on=on, by=by, reason=reason):
            return None
        try:
            recordings = self.save(board)
        except IntegrityError:  # another process set one at the same moment
            return self.set(switch, on=on, by=by, reason=reason)
        self._checked = float("-inf")  # this process sees its own change at once
        return recordings[-1].notification.id

    def states(self) -> list[SwitchState]:
        """Every switch, engaged or not, in the runbook's order."""
        engaged = self._current()
        return [
            SwitchState(name, name in engaged, *engaged.get(name, ("", "")))
            for name in BACKOUTS
        ]

    def is_on(self, switch: str) -> bool:
        return switch in self._current()

    def _current(self) -> dict[str, tuple[str, str]]:
        now = self._clock()
        if now - self._checked < self.refresh_s:
            return self._engaged
        with self._lock:
            if now - self._checked < self.refresh_s:
                return self._engaged
            board_id = Switchboard.create_id()
            latest = self.recorder.select_events(board_id, desc=True, limit=1)
            version = latest[0].originator_version if latest else 0
            if version != self._version:
                board = self._load(board_id)
                self._engaged = (
                    dict(board.engaged) if isinstance(board, Switchboard) else {}
                )
                self._version = version
            self._checked = now
            return self._engaged
