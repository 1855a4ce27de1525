"""The Failover aggregate: one DR drill from start to signed evidence.

DrillStarted -> BaselineMeasured -> PrimaryLost | SwitchoverBegun -> Fenced ->
Promoted -> WritesResumed -> ReturnStarted -> Restored -> DrillCompleted ->
EvidenceSigned. Each step may only follow the one before it; the epoch only
grows. Timings are integers (ms) or Decimals (p95 ms): no floats in events.
"""

# ruff: noqa: ARG002 - an @event method's arguments are its event's fields
from __future__ import annotations

from decimal import Decimal  # noqa: TC003 - event fields, kept at runtime
from typing import TYPE_CHECKING

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError, FieldViolation, ValidationError
from domain.topics import keep_stored_topics

if TYPE_CHECKING:
    from uuid import UUID

MODES = ("failover", "switchover")
_ORDER = (
    "started",
    "baselined",
    "lost",
    "fenced",
    "promoted",
    "resumed",
    "returning",
    "restored",
    "completed",
    "signed",
)


class FailoverStepError(ConflictError):
    """A drill step came out of order."""

    def __init__(self, drill_id: UUID, status: str, step: str) -> None:
        self.drill_id = drill_id
        super().__init__(f"drill {drill_id} is {status}: cannot {step}")


class Failover(Aggregate):
    """A failover or switchover drill between two regions."""

    class DrillStarted(Aggregate.Created):
        mode: str
        sync: bool
        primary: str
        standby: str

    @event(DrillStarted)
    def __init__(self, *, mode: str, sync: bool, primary: str, standby: str) -> None:
        self.mode = mode
        self.sync = sync
        self.primary = primary
        self.standby = standby
        self.status = "started"
        self.epoch = 0
        self.rto_ms: int | None = None
        self.rpo_commands: int | None = None
        self.evidence_sha256 = ""

    @classmethod
    def start(cls, *, mode: str, sync: bool, primary: str, standby: str) -> Failover:
        """Open a drill (mode failover or switchover) from primary to standby."""
        if mode not in MODES:
            raise ValidationError(
                [FieldViolation("mode", "enum", f"one of {', '.join(MODES)}")]
            )
        if primary == standby:
            raise ValidationError(
                [FieldViolation("standby", "distinct", "must differ from primary")]
            )
        return cls(mode=mode, sync=sync, primary=primary, standby=standby)

    def _step(self, step: str, after: str) -> None:
        if self.status != after:
            raise FailoverStepError(self.id, self.status, step)

    class BaselineMeasured(Aggregate.Event):
        reads: int
        read_p95_ms: Decimal

    def measure_baseline(self, *, reads: int, read_p95_ms: Decimal) -> None:
        self._step("measure the baseline", "started")
        self._measure_baseline(reads=reads, read_p95_ms=read_p95_ms)

    @event(BaselineMeasured)
    def _measure_baseline(self, *, reads: int, read_p95_ms: Decimal) -> None:
        self.status = "baselined"

    class PrimaryLost(Aggregate.Event):
        region: str
        detected_after_ms: int

    def lose_primary(self, *, detected_after_ms: int) -> None:
        self._step("lose the primary", "baselined")
        if self.mode != "failover":
            raise FailoverStepError(self.id, self.mode, "lose the primary")
        self._lose_primary(region=self.primary, detected_after_ms=detected_after_ms)

    @event(PrimaryLost)
    def _lose_primary(self, *, region: str, detected_after_ms: int) -> None:
        self.status = "lost"

    class SwitchoverBegun(Aggregate.Event):
        region: str

    def begin_switchover(self) -> None:
        self._step("begin a switchover", "baselined")
        if self.mode != "switchover":
            raise FailoverStepError(self.id, self.mode, "begin a switchover")
        self._begin_switchover(region=self.primary)

    @event(SwitchoverBegun)
    def _begin_switchover(self, *, region: str) -> None:
        self.status = "lost"

    class Fenced(Aggregate.Event):
        region: str
        epoch: int

    def fence(self, *, epoch: int) -> None:
        self._step("fence", "lost")
        if epoch <= self.epoch:
            raise FailoverStepError(self.id, f"at epoch {self.epoch}", f"go to {epoch}")
        self._fence(region=self.primary, epoch=epoch)

    @event(Fenced)
    def _fence(self, *, region: str, epoch: int) -> None:
        self.epoch = epoch
        self.status = "fenced"

    class Promoted(Aggregate.Event):
        region: str
        lsn: str

    def promote(self, *, lsn: str) -> None:
        self._step("promote", "fenced")
        self._promote(region=self.standby, lsn=lsn)

    @event(Promoted)
    def _promote(self, *, region: str, lsn: str) -> None:
        self.status = "promoted"

    class WritesResumed(Aggregate.Event):
        region: str
        rto_ms: int

    def resume_writes(self, *, rto_ms: int) -> None:
        self._step("resume writes", "promoted")
        self._resume_writes(region=self.standby, rto_ms=rto_ms)

    @event(WritesResumed)
    def _resume_writes(self, *, region: str, rto_ms: int) -> None:
        self.rto_ms = rto_ms
        self.status = "resumed"

    class ReturnStarted(Aggregate.Event):
        region: str

    def start_return(self) -> None:
        self._step("start the return", "resumed")
        self._start_return(region=self.primary)

    @event(ReturnStarted)
    def _start_return(self, *, region: str) -> None:
        self.status = "returning"

    class Restored(Aggregate.Event):
        primary: str
        epoch: int
        return_ms: int

    def restore(self, *, epoch: int, return_ms: int) -> None:
        self._step("restore", "returning")
        if epoch <= self.epoch:
            raise FailoverStepError(self.id, f"at epoch {self.epoch}", f"go to {epoch}")
        self._restore(primary=self.primary, epoch=epoch, return_ms=return_ms)

    @event(Restored)
    def _restore(self, *, primary: str, epoch: int, return_ms: int) -> None:
        self.epoch = epoch
        self.status = "restored"

    class DrillCompleted(Aggregate.Event):
        rto_ms: int
        rpo_commands: int
        rpo_ms: int
        read_p95_baseline_ms: Decimal
        read_p95_window_ms: Decimal

    def complete(
        self,
        *,
        rpo_commands: int,
        rpo_ms: int,
        read_p95_baseline_ms: Decimal,
        read_p95_window_ms: Decimal,
    ) -> None:
        self._step("complete", "restored")
        assert self.rto_ms is not None  # set by WritesResumed, which came before
        self._complete(
            rto_ms=self.rto_ms,
            rpo_commands=rpo_commands,
            rpo_ms=rpo_ms,
            read_p95_baseline_ms=read_p95_baseline_ms,
            read_p95_window_ms=read_p95_window_ms,
        )

    @event(DrillCompleted)
    def _complete(
        self,
        *,
        rto_ms: int,
        rpo_commands: int,
        rpo_ms: int,
        read_p95_baseline_ms: Decimal,
        read_p95_window_ms: Decimal,
    ) -> None:
        self.rpo_commands = rpo_commands
        self.status = "completed"

    class EvidenceSigned(Aggregate.Event):
        sha256: str
        key_id: str
        signature: str

    def sign_evidence(self, *, sha256: str, key_id: str, signature: str) -> None:
        self._step("sign the evidence", "completed")
        self._sign_evidence(sha256=sha256, key_id=key_id, signature=signature)

    @event(EvidenceSigned)
    def _sign_evidence(self, *, sha256: str, key_id: str, signature: str) -> None:
        self.evidence_sha256 = sha256
        self.status = "signed"


keep_stored_topics(__name__, stored_as="domain.failover")
