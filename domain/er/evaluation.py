"""ER evaluations: the recall evidence of `conductor er eval`, one event per run.

An evaluation compares blocking alone (the baseline) with blocking | ANN (the
assist) on a labelled set. The log keeps its figures, so an auditor holding
an exported log sees the recall evidence without the machine that ran it:
the labelled set's digest, both sides' candidate recall, recall and
precision, the candidate counts and the gate's digest. Never a record value.
"""

# ruff: noqa: ARG002 - an @event method's arguments are its event's fields
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import FieldViolation, ValidationError

PLACES = Decimal("0.000001")
"""Figures are kept to six decimals (as `er eval --json` prints them)."""


def quantized(value: Decimal) -> Decimal:
    return value.quantize(PLACES, rounding=ROUND_HALF_EVEN)


def relative_gain(baseline: Decimal, assist: Decimal) -> Decimal | None:
    """(assist - baseline) / baseline, six decimals; None without a baseline."""
    return quantized((assist - baseline) / baseline) if baseline else None


@dataclass(frozen=True, slots=True)
class Side:
    """One candidate generator's figures (fractions in 0..1)."""

    pairs: int
    candidate_recall: Decimal
    """Pairs completeness: the share of true pairs among the candidates."""
    recall: Decimal
    """After the gate: true pairs merged over true pairs."""
    precision: Decimal


@dataclass(frozen=True, slots=True)
class Figures:
    """The last evaluation, as the metric, the guard and the auditor read it."""

    labelled_set: str
    labelled_sha256: str
    baseline: Side
    assist: Side
    recall_gain: Decimal | None
    recall_delta: Decimal
    gate_digest: str
    blocking: str


class ErEvaluation(Aggregate):
    """The platform's ER evaluations: one Evaluated event per `er eval` run."""

    class Started(Aggregate.Created):
        pass

    class Evaluated(Aggregate.Event):
        labelled_set: str
        """The set's name (a file name or Febrl 3/4), not its content."""
        labelled_sha256: str
        """SHA-256 over the labelled file(s): records, links (and side B)."""
        records: int
        true_pairs: int
        blocking: str
        k: int
        gate_digest: str
        embedder: str
        baseline_pairs: int
        assist_pairs: int
        ann_pairs: int
        baseline_candidate_recall: Decimal
        assist_candidate_recall: Decimal
        baseline_recall: Decimal
        assist_recall: Decimal
        baseline_precision: Decimal
        assist_precision: Decimal
        recall_gain: Decimal | None
        """Relative candidate-recall gain (None: the baseline found no pair)."""
        recall_delta: Decimal
        """Absolute: assist's candidate recall minus the baseline's."""

    @staticmethod
    def create_id() -> UUID:
        return uuid5(NAMESPACE_URL, "/platform/er-evaluations")

    @event(Started)
    def __init__(self) -> None:
        self.latest: Figures | None = None
        self.evaluations = 0

    def record(
        self,
        *,
        labelled_set: str,
        labelled_sha256: str,
        records: int,
        true_pairs: int,
        blocking: str,
        k: int,
        gate_digest: str,
        embedder: str,
        baseline: Side,
        assist: Side,
        ann_pairs: int,
    ) -> None:
        """Record one run; the gain and the delta are computed here."""
        _check(labelled_sha256, gate_digest, (baseline, assist))
        base = quantized(baseline.candidate_recall)
        with_ann = quantized(assist.candidate_recall)
        self._record(
            labelled_set=labelled_set,
            labelled_sha256=labelled_sha256,
            records=records,
            true_pairs=true_pairs,
            blocking=blocking,
            k=k,
            gate_digest=gate_digest,
            embedder=embedder,
            baseline_pairs=baseline.pairs,
            assist_pairs=assist.pairs,
            ann_pairs=ann_pairs,
            baseline_candidate_recall=base,
            assist_candidate_recall=with_ann,
            baseline_recall=quantized(baseline.recall),
            assist_recall=quantized(assist.recall),
            baseline_precision=quantized(baseline.precision),
            assist_precision=quantized(assist.precision),
            recall_gain=relative_gain(base, with_ann),
            recall_delta=quantized(with_ann - base),
        )

    @event(Evaluated)
    def _record(
        self,
        *,
        labelled_set: str,
        labelled_sha256: str,
        records: int,
        true_pairs: int,
        blocking: str,
        k: int,
        gate_digest: str,
        embedder: str,
        baseline_pairs: int,
        assist_pairs: int,
        ann_pairs: int,
        baseline_candidate_recall: Decimal,
        assist_candidate_recall: Decimal,
        baseline_recall: Decimal,
        assist_recall: Decimal,
        baseline_precision: Decimal,
        assist_precision: Decimal,
        recall_gain: Decimal | None,
        recall_delta: Decimal,
    ) -> None:
        self.evaluations += 1
        self.latest = Figures(
            labelled_set=labelled_set,
            labelled_sha256=labelled_sha256,
            baseline=Side(
                baseline_pairs,
                Decimal(baseline_candidate_recall),
                Decimal(baseline_recall),
                Decimal(baseline_precision),
            ),
            assist=Side(
                assist_pairs,
                Decimal(assist_candidate_recall),
                Decimal(assist_recall),
                Decimal(assist_precision),
            ),
            recall_gain=None if recall_gain is None else Decimal(recall_gain),
            recall_delta=Decimal(recall_delta),
            gate_digest=gate_digest,
            blocking=blocking,
        )


def _check(labelled_sha256: str, gate_digest: str, sides: tuple[Side, ...]) -> None:
    violations = [
        FieldViolation(name, "sha256", "64 lowercase hex digits")
        for name, digest in (
            ("labelledSha256", labelled_sha256),
            ("gateDigest", gate_digest),
        )
        if len(digest) != 64 or digest.strip("0123456789abcdef")
    ]
    for name, side in zip(("baseline", "assist"), sides, strict=True):
        fractions = (side.candidate_recall, side.recall, side.precision)
        if side.pairs < 0 or not all(0 <= f <= 1 for f in fractions):
            violations.append(
                FieldViolation(name, "fraction", "counts >= 0, fractions in 0..1")
            )
    if violations:
        raise ValidationError(violations)
