"""The ER evaluations an exported log records: the recall evidence, offline.

Each `conductor er eval` run is an ErEvaluation.Evaluated event. An auditor
replaying the log sees every evaluation's figures and position, and each
one's gain and delta are recomputed from its recorded recalls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Mapper, StoredEvent

from adapters.ledger.transcoder import CanonicalJSONTranscoder
from application.er.evaluations import RECALL_GAIN_TARGET
from domain.er.evaluation import ErEvaluation, quantized, relative_gain

if TYPE_CHECKING:
    from collections.abc import Iterable
    from decimal import Decimal
    from uuid import UUID

    from application.ports import LogEntry


@dataclass(frozen=True, slots=True)
class RecordedEvaluation:
    """One evaluation as the log holds it, and what recomputing it found."""

    position: int
    figures: dict[str, Any]
    mismatches: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            **self.figures,
            "consistent": not self.mismatches,
            "mismatches": list(self.mismatches),
        }


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _side(event: Any, side: str) -> dict[str, Any]:
    return {
        "pairs": getattr(event, f"{side}_pairs"),
        "candidateRecall": _number(getattr(event, f"{side}_candidate_recall")),
        "recall": _number(getattr(event, f"{side}_recall")),
        "precision": _number(getattr(event, f"{side}_precision")),
    }


def _figures(event: ErEvaluation.Evaluated) -> dict[str, Any]:
    gain = event.recall_gain
    return {
        "labelledSet": event.labelled_set,
        "labelledSha256": event.labelled_sha256,
        "records": event.records,
        "truePairs": event.true_pairs,
        "blocking": event.blocking,
        "k": event.k,
        "gateDigest": event.gate_digest,
        "embedder": event.embedder,
        "baseline": _side(event, "baseline"),
        "assist": _side(event, "assist"),
        "annPairs": event.ann_pairs,
        "recallGain": _number(gain),
        "recallDelta": _number(event.recall_delta),
        "meetsTarget": gain is not None and gain >= RECALL_GAIN_TARGET,
    }


def _mismatches(event: ErEvaluation.Evaluated) -> tuple[str, ...]:
    base, assist = event.baseline_candidate_recall, event.assist_candidate_recall
    found = []
    gain = relative_gain(base, assist)
    if gain != event.recall_gain:
        found.append(f"recall gain {event.recall_gain} != recomputed {gain}")
    if quantized(assist - base) != event.recall_delta:
        found.append(f"recall delta {event.recall_delta} != {assist} - {base}")
    return tuple(found)


def recorded_evaluations(records: Iterable[LogEntry]) -> list[RecordedEvaluation]:
    """Every ER evaluation in the records, in log order."""
    mapper: Mapper[UUID] = Mapper(transcoder=CanonicalJSONTranscoder())
    found = []
    for r in records:
        if not r.topic.endswith(":ErEvaluation.Evaluated"):
            continue
        stored = StoredEvent(r.originator_id, r.version, r.topic, r.state)
        event = mapper.to_domain_event(stored)
        if isinstance(event, ErEvaluation.Evaluated):
            found.append(
                RecordedEvaluation(r.position, _figures(event), _mismatches(event))
            )
    return found
