"""ER evaluations in the log: each `conductor er eval` run, and the latest one.

The recall guard and the ``conductor_er_recall_*`` gauges read the latest
evaluation from the log (not a file beside it), so what they show is what an
auditor replaying the exported log sees.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import TYPE_CHECKING

from eventsourcing.persistence import IntegrityError

from application.base import LedgerApplication
from domain.er.evaluation import ErEvaluation, Figures, Side

if TYPE_CHECKING:
    from application.er.evaluation import EvalReport, SideReport
    from application.ports import EventLog

RECALL_GAIN_TARGET = Decimal("0.10")
"""The seed's target: the assist adds at least +10 % candidate recall,
relative to blocking alone ((assist - baseline) / baseline)."""


def below_target(figures: Figures, target: Decimal = RECALL_GAIN_TARGET) -> bool:
    """Whether an evaluation misses the recall-gain target.

    Without a baseline (blocking found no true pair) the gain is unbounded
    if the assist found any, and nothing was gained if it found none.
    """
    if figures.recall_gain is None:
        return figures.assist.candidate_recall == 0
    return figures.recall_gain < target


def _side(report: SideReport) -> Side:
    return Side(
        pairs=report.pairs,
        candidate_recall=Decimal(repr(report.pairs_completeness)),
        recall=Decimal(repr(report.recall)),
        precision=Decimal(repr(report.precision)),
    )


class ErEvaluations(LedgerApplication):
    """Records ER evaluations (ErEvaluation.Evaluated) and reads the latest."""

    name = "ledger"

    def __init__(self, log: EventLog) -> None:
        super().__init__(log)
        self._lock = threading.Lock()
        self._cached: tuple[int, Figures | None] | None = None

    def record_evaluation(
        self,
        report: EvalReport,
        *,
        labelled_set: str,
        labelled_sha256: str,
        records: int,
        blocking: str,
        k: int,
        gate_digest: str,
        embedder: str,
    ) -> int:
        """Record one evaluation's figures (no record values); the position."""
        for _ in range(5):  # another evaluation may be recorded at the same moment
            found = self._load(ErEvaluation.create_id())
            log = found if isinstance(found, ErEvaluation) else ErEvaluation()
            log.record(
                labelled_set=labelled_set,
                labelled_sha256=labelled_sha256,
                records=records,
                true_pairs=report.true_pairs,
                blocking=blocking,
                k=k,
                gate_digest=gate_digest,
                embedder=embedder,
                baseline=_side(report.baseline),
                assist=_side(report.assist),
                ann_pairs=report.ann.pairs,
            )
            try:
                recordings = self.save(log)
            except IntegrityError:
                continue
            return recordings[-1].notification.id
        msg = "the ER evaluations kept changing under this one: try again"
        raise RuntimeError(msg)

    def latest(self) -> Figures | None:
        """The latest evaluation's figures (None before the first)."""
        head = self.recorder.max_notification_id() or 0
        with self._lock:
            if self._cached is not None and self._cached[0] == head:
                return self._cached[1]
        found = self._load(ErEvaluation.create_id())
        figures = found.latest if isinstance(found, ErEvaluation) else None
        with self._lock:
            self._cached = (head, figures)
        return figures
