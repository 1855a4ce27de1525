"""The eval harness: blocking alone against blocking | ANN, on any labeled set.

For each side: candidate pairs, pairs completeness (candidate recall), reduction
ratio, pair quality, and precision / recall / F1 after the same gate at the
same threshold; plus the relative recall gain and the share of the true pairs
blocking missed that ANN recovers. The gate is run once on the union of the
candidates, so a pair both sides hold gets one decision, not two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from application.er.candidates import PairSpace, ann_pairs, blocked_pairs

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import numpy.typing as npt

    from application.er.rules import Blocking, Gate
    from application.ports import NearestNeighbours

EVAL_STEPS = 4
"""The steps ``evaluate`` reports: blocking, ANN, the gate, the comparison."""


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


@dataclass(frozen=True, slots=True)
class SideReport:
    """One candidate generator's numbers (fractions in 0..1)."""

    pairs: int
    pairs_completeness: float
    reduction_ratio: float
    pair_quality: float
    precision: float
    recall: float
    f1: float

    def to_json(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "pairs_completeness": round(self.pairs_completeness, 6),
            "reduction_ratio": round(self.reduction_ratio, 6),
            "pair_quality": round(self.pair_quality, 6),
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "f1": round(self.f1, 6),
        }


@dataclass(frozen=True)
class EvalReport:
    """Baseline (blocking), assist (blocking | ANN) and ANN alone."""

    baseline: SideReport
    assist: SideReport
    ann: SideReport
    recovered_share: float | None
    """Of the true pairs blocking missed, the share ANN found (None: none missed)."""
    true_pairs: int
    total_pairs: int
    union: npt.NDArray[np.int64] = field(repr=False)
    merged: npt.NDArray[np.bool_] = field(repr=False)
    """The gate's decision on each pair of ``union`` (one decision per pair)."""

    @property
    def relative_gain(self) -> float | None:
        """Relative candidate-recall gain of assist over baseline."""
        base = self.baseline.pairs_completeness
        return (self.assist.pairs_completeness - base) / base if base else None

    def decisions(self, pairs: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """The gate's decisions for some of the union's pairs."""
        return self.merged[np.searchsorted(self.union, pairs)]

    def to_json(self) -> dict[str, Any]:
        share = self.recovered_share
        return {
            "baseline": self.baseline.to_json(),
            "assist": self.assist.to_json(),
            "recovered_share": None if share is None else round(share, 6),
        }


def side(
    candidates: npt.NDArray[np.int64],
    links: npt.NDArray[np.int64],
    predicted: npt.NDArray[np.int64],
    total: int,
) -> SideReport:
    found = len(np.intersect1d(candidates, links, assume_unique=True))
    hits = len(np.intersect1d(predicted, links, assume_unique=True))
    precision = _ratio(hits, len(predicted))
    recall = _ratio(hits, len(links))
    return SideReport(
        pairs=len(candidates),
        pairs_completeness=_ratio(found, len(links)),
        reduction_ratio=1.0 - _ratio(len(candidates), total),
        pair_quality=_ratio(found, len(candidates)),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
    )


@dataclass(frozen=True)
class LabeledSet:
    """Records as columns (one set: dedup; two: linkage) and the true pairs."""

    left: Mapping[str, Sequence[str]]
    rows_left: int
    links: npt.NDArray[np.int64]
    """Sorted unique pair codes in ``space``."""
    right: Mapping[str, Sequence[str]] | None = None
    rows_right: int | None = None

    @property
    def space(self) -> PairSpace:
        return PairSpace(self.rows_left, self.rows_right)


def evaluate(
    data: LabeledSet,
    *,
    blocking: Blocking,
    gate: Gate,
    neighbours: NearestNeighbours,
    vectors: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None],
    k: int,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Run both candidate generators and the one gate; compare them.

    ``progress`` (if given) is told (steps done, EVAL_STEPS) after each step:
    blocking, ANN, the gate, the comparison."""
    step = progress or (lambda _done, _total: None)
    space = data.space
    base = blocked_pairs(blocking, space, data.left, data.right)
    step(1, EVAL_STEPS)
    ann = ann_pairs(neighbours, space, vectors[0], vectors[1], k)
    step(2, EVAL_STEPS)
    union = np.union1d(base, ann)
    i, j = space.decode(union)
    merged = gate.merges(gate.scores(data.left, data.right or data.left, i, j))
    predicted = union[merged]
    step(3, EVAL_STEPS)

    def report(candidates: npt.NDArray[np.int64]) -> SideReport:
        chosen = np.intersect1d(predicted, candidates, assume_unique=True)
        return side(candidates, data.links, chosen, space.total)

    missed = np.setdiff1d(data.links, base, assume_unique=True)
    recovered = np.intersect1d(missed, ann, assume_unique=True)
    result = EvalReport(
        baseline=report(base),
        assist=report(union),
        ann=report(ann),
        recovered_share=_ratio(len(recovered), len(missed)) if len(missed) else None,
        true_pairs=len(data.links),
        total_pairs=space.total,
        union=union,
        merged=merged,
    )
    step(EVAL_STEPS, EVAL_STEPS)
    return result
