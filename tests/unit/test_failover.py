"""The Failover aggregate: steps in order, epochs that only grow, no floats."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.dr.failover import Failover, FailoverStepError
from domain.errors import ValidationError


def _through_resume(mode: str = "failover") -> Failover:
    drill = Failover.start(mode=mode, sync=True, primary="A", standby="B")
    drill.measure_baseline(reads=10, read_p95_ms=Decimal("1.250"))
    if mode == "failover":
        drill.lose_primary(detected_after_ms=120)
    else:
        drill.begin_switchover()
    drill.fence(epoch=2)
    drill.promote(lsn="0/3000060")
    drill.resume_writes(rto_ms=340)
    return drill


def test_a_full_drill_records_every_step_in_order() -> None:
    """Started..EvidenceSigned, with the RTO carried into DrillCompleted."""
    drill = _through_resume()
    drill.start_return()
    drill.restore(epoch=3, return_ms=4100)
    drill.complete(
        rpo_commands=0,
        rpo_ms=0,
        read_p95_baseline_ms=Decimal("1.250"),
        read_p95_window_ms=Decimal("1.400"),
    )
    drill.sign_evidence(sha256="ab" * 32, key_id="k1", signature="c2ln")
    events = drill.collect_events()
    assert [type(e).__name__ for e in events] == [
        "DrillStarted",
        "BaselineMeasured",
        "PrimaryLost",
        "Fenced",
        "Promoted",
        "WritesResumed",
        "ReturnStarted",
        "Restored",
        "DrillCompleted",
        "EvidenceSigned",
    ]
    completed = events[-2]
    assert isinstance(completed, Failover.DrillCompleted)
    assert completed.rto_ms == 340
    assert drill.status == "signed"
    assert drill.epoch == 3


def test_steps_out_of_order_are_refused() -> None:
    """Promoting before fencing, or signing before completing, is a conflict."""
    drill = Failover.start(mode="failover", sync=False, primary="A", standby="B")
    with pytest.raises(FailoverStepError):
        drill.promote(lsn="0/1")
    drill.measure_baseline(reads=1, read_p95_ms=Decimal(1))
    with pytest.raises(FailoverStepError):
        drill.begin_switchover()  # a failover drill loses its primary instead
    with pytest.raises(FailoverStepError):
        drill.sign_evidence(sha256="0" * 64, key_id="k", signature="s")


def test_the_epoch_only_grows() -> None:
    """Restored must name an epoch above the failover's."""
    drill = _through_resume("switchover")
    drill.start_return()
    with pytest.raises(FailoverStepError):
        drill.restore(epoch=2, return_ms=1)


def test_bad_mode_or_same_regions_name_the_field() -> None:
    """Validation errors carry the field and the rule."""
    with pytest.raises(ValidationError) as bad_mode:
        Failover.start(mode="chaos", sync=True, primary="A", standby="B")
    assert bad_mode.value.violations[0].field == "mode"
    with pytest.raises(ValidationError) as same:
        Failover.start(mode="failover", sync=True, primary="A", standby="A")
    assert same.value.violations[0].field == "standby"
