"""ER evaluations as events: the gain on the relative definition, in the log."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import pytest

from adapters.audit.evaluations import recorded_evaluations
from adapters.er.files import labelled_sha256
from adapters.ledger.store import open_ledger
from application.er.evaluation import EvalReport, SideReport
from application.er.evaluations import ErEvaluations, below_target
from domain.er.evaluation import ErEvaluation, Side
from domain.errors import ValidationError

if TYPE_CHECKING:
    from pathlib import Path

DIGEST = "ab" * 32


def side(candidate_recall: float, precision: float = 1.0) -> Side:
    return Side(
        pairs=100,
        candidate_recall=Decimal(repr(candidate_recall)),
        recall=Decimal(repr(candidate_recall * 0.75)),
        precision=Decimal(repr(precision)),
    )


def evaluated(baseline: float, assist: float) -> ErEvaluation:
    """An evaluation log with one run: candidate recall baseline -> assist."""
    log = ErEvaluation()
    log.record(
        labelled_set="people.csv (dedup)",
        labelled_sha256=DIGEST,
        records=1000,
        true_pairs=400,
        blocking="exact:given_name",
        k=5,
        gate_digest="cd" * 32,
        embedder="hash",
        baseline=side(baseline),
        assist=side(assist),
        ann_pairs=80,
    )
    return log


def report(baseline: float, assist: float) -> EvalReport:
    def one(recall: float, pairs: int) -> SideReport:
        return SideReport(pairs, recall, 0.99, 0.5, 1.0, recall * 0.75, 0.6)

    return EvalReport(
        baseline=one(baseline, 100),
        assist=one(assist, 130),
        ann=one(assist, 60),
        recovered_share=0.9,
        true_pairs=400,
        total_pairs=499_500,
        union=np.array([], dtype=np.int64),
        merged=np.array([], dtype=np.bool_),
    )


class TestErEvaluation:
    def test_the_gain_is_relative_and_the_delta_absolute(self) -> None:
        """0.5 -> 0.56: delta +0.06, gain +12 %, six decimals each."""
        log = evaluated(0.5, 0.56)
        [_, recorded] = log.collect_events()
        assert isinstance(recorded, ErEvaluation.Evaluated)
        assert recorded.recall_gain == Decimal("0.120000")
        assert recorded.recall_delta == Decimal("0.060000")
        assert log.latest is not None
        assert log.latest.recall_gain == Decimal("0.12")
        assert log.evaluations == 1

    def test_no_baseline_gives_no_gain(self) -> None:
        """Blocking found no true pair: the relative gain is undefined."""
        log = evaluated(0.0, 0.7)
        assert log.latest is not None
        assert log.latest.recall_gain is None
        assert not below_target(log.latest)  # the assist found pairs
        assert below_target(evaluated(0.0, 0.0).latest)  # type: ignore[arg-type]

    def test_bad_digests_and_fractions_are_refused(self) -> None:
        """No event for a digest that is not SHA-256 or a recall above 1."""
        log = ErEvaluation()
        with pytest.raises(ValidationError) as caught:
            log.record(
                labelled_set="x",
                labelled_sha256="not-a-digest",
                records=1,
                true_pairs=1,
                blocking="none",
                k=5,
                gate_digest=DIGEST,
                embedder="hash",
                baseline=side(0.5),
                assist=side(1.5),
                ann_pairs=0,
            )
        assert {v.field for v in caught.value.violations} == {
            "labelledSha256",
            "assist",
        }
        assert log.evaluations == 0


class TestTheTarget:
    def test_old_absolute_logic_would_breach_but_the_relative_gain_meets_it(
        self,
    ) -> None:
        """0.5 -> 0.56 adds 0.06 absolute (< 0.10) but +12 % relative (>= +10 %)."""
        figures = evaluated(0.5, 0.56).latest
        assert figures is not None
        assert figures.recall_delta < Decimal("0.10")  # the old guard fired here
        assert not below_target(figures)

    def test_a_gain_under_ten_percent_misses_it(self) -> None:
        """0.95 -> 0.999: +5.2 % relative misses the +10 % target."""
        figures = evaluated(0.95, 0.999).latest
        assert figures is not None
        assert figures.recall_gain == Decimal("0.051579")
        assert below_target(figures)


def test_evaluations_are_recorded_in_the_log_and_read_back(tmp_path: Path) -> None:
    """Each run is one event; latest() is the last; an exported log shows them."""
    ledger = open_ledger(f"sqlite:///{tmp_path / 'log.db'}", pool_size=2)
    try:
        app = ErEvaluations(ledger)
        assert app.latest() is None
        run = {
            "labelled_set": "people.csv (dedup)",
            "labelled_sha256": DIGEST,
            "records": 1000,
            "blocking": "exact:given_name",
            "k": 5,
            "gate_digest": "cd" * 32,
            "embedder": "hash",
        }
        first = app.record_evaluation(report(0.95, 0.999), **run)
        second = app.record_evaluation(report(0.5, 0.56), **run)
        assert second > first
        latest = app.latest()
        assert latest is not None
        assert latest.recall_gain == Decimal("0.12")
        entries = ledger.entries(after=0, limit=100)
        found = recorded_evaluations(entries)
        assert [e.position for e in found] == [first, second]
        assert [e.figures["recallGain"] for e in found] == [0.051579, 0.12]
        assert [e.figures["meetsTarget"] for e in found] == [False, True]
        assert all(not e.mismatches for e in found)
        assert found[0].figures["baseline"]["candidateRecall"] == 0.95
    finally:
        ledger.close()


def test_the_labelled_digest_is_reproducible_with_sha256sum(tmp_path: Path) -> None:
    """sha256sum FILES | cut -c1-64 | sha256sum: the digest over each file's."""
    records, links = tmp_path / "r.csv", tmp_path / "l.csv"
    records.write_text("rec_id\nr0\n")
    links.write_text("a,b\n")
    lines = "".join(
        hashlib.sha256(p.read_bytes()).hexdigest() + "\n" for p in (records, links)
    )
    assert (
        labelled_sha256([records, links]) == hashlib.sha256(lines.encode()).hexdigest()
    )
