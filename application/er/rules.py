"""The ER rules: blocking keys that propose pairs, and the gate that decides them.

The gate is the merge policy: a fixed list of comparisons (Jaro-Winkler at a
threshold, or exact equality), each scoring 0 or 1 on a pair, and a pair merges
when the sum reaches ``merge_at``. It sees only the two records of a pair, so
the way a pair was proposed (blocking or ANN) cannot change its decision. A
missing (empty) value never agrees.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jellyfish
import numpy as np

from domain.errors import FieldViolation, ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import numpy.typing as npt

DEFAULT_COMPARISONS = (
    "jw:given_name>=0.85,jw:surname>=0.85,jw:address_1>=0.85,jw:suburb>=0.85,"
    "exact:date_of_birth,exact:postcode,exact:street_number"
)
_COMPARISON = re.compile(
    r"(jw|exact):([a-z][a-z0-9_]{0,63})(?:>=(0?\.\d+|1(?:\.0+)?))?"
)
_TERM = re.compile(r"(?:(exact|soundex|first(\d{1,2})):)?([a-z][a-z0-9_]{0,63})")


@dataclass(frozen=True, slots=True)
class Comparison:
    """One rule: ``jw`` (Jaro-Winkler >= threshold) or ``exact`` on a field."""

    method: str
    field: str
    threshold: float = 1.0

    def __str__(self) -> str:
        if self.method == "exact":
            return f"exact:{self.field}"
        return f"jw:{self.field}>={self.threshold:g}"

    def agree(
        self,
        left: Sequence[str],
        right: Sequence[str],
        i: npt.NDArray[np.int64],
        j: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """Whether each pair (left[i], right[j]) agrees on this field."""
        a = np.asarray(left, dtype=object)[i]
        b = np.asarray(right, dtype=object)[j]
        if self.method == "exact":
            return np.asarray((a == b) & (a != ""), dtype=bool)
        jw = jellyfish.jaro_winkler_similarity
        t = self.threshold
        return np.fromiter(
            (bool(x) and bool(y) and jw(x, y) >= t for x, y in zip(a, b, strict=True)),
            dtype=bool,
            count=len(a),
        )


@dataclass(frozen=True, slots=True)
class Gate:
    """The merge policy: comparisons summed; a pair merges at ``merge_at``."""

    comparisons: tuple[Comparison, ...]
    merge_at: float

    @classmethod
    def parse(cls, spec: str, merge_at: float) -> Gate:
        """``jw:given_name>=0.85,exact:postcode,...`` (ValidationError if not)."""
        comparisons = []
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            match = _COMPARISON.fullmatch(part)
            if match is None or (match.group(1) == "exact") != (not match.group(3)):
                raise ValidationError(
                    [
                        FieldViolation(
                            "comparisons", "syntax", f"bad comparison {part!r}"
                        )
                    ]
                )
            method, name, threshold = match.groups()
            comparisons.append(Comparison(method, name, float(threshold or 1.0)))
        if not comparisons:
            raise ValidationError(
                [FieldViolation("comparisons", "required", "no comparisons")]
            )
        if not 0 < merge_at <= len(comparisons):
            raise ValidationError(
                [
                    FieldViolation(
                        "threshold",
                        "range",
                        f"must be in (0, {len(comparisons)}]: at most one point "
                        "per comparison",
                    )
                ]
            )
        return cls(tuple(comparisons), merge_at)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.comparisons)

    @property
    def spec(self) -> str:
        return ",".join(map(str, self.comparisons)) + f";merge>={self.merge_at:g}"

    @property
    def digest(self) -> str:
        """Names the exact policy in every decision it makes."""
        return hashlib.sha256(self.spec.encode()).hexdigest()

    def agreements(
        self,
        left: Mapping[str, Sequence[str]],
        right: Mapping[str, Sequence[str]],
        i: npt.NDArray[np.int64],
        j: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.bool_]:
        """(pairs x comparisons) agreement matrix."""
        out = np.zeros((len(i), len(self.comparisons)), dtype=bool)
        for col, comparison in enumerate(self.comparisons):
            out[:, col] = comparison.agree(
                column(left, comparison.field),
                column(right, comparison.field),
                i,
                j,
            )
        return out

    def scores(
        self,
        left: Mapping[str, Sequence[str]],
        right: Mapping[str, Sequence[str]],
        i: npt.NDArray[np.int64],
        j: npt.NDArray[np.int64],
    ) -> npt.NDArray[np.int64]:
        scores: npt.NDArray[np.int64] = self.agreements(left, right, i, j).sum(
            axis=1, dtype=np.int64
        )
        return scores

    def merges(self, scores: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        return np.asarray(scores >= self.merge_at, dtype=bool)


def column(columns: Mapping[str, Sequence[str]], name: str) -> Sequence[str]:
    """A field's values, or empty strings when the records do not carry it."""
    found = columns.get(name)
    if found is not None:
        return found
    return [""] * len(next(iter(columns.values()), ()))


def _term_key(method: str, width: str | None) -> Callable[[str], str]:
    if method == "soundex":
        return lambda v: jellyfish.soundex(v) if v else ""
    if method.startswith("first"):
        n = int(width or 1)
        return lambda v: v[:n]
    return lambda v: v


@dataclass(frozen=True, slots=True)
class Blocking:
    """Pairs whose block keys are equal: ``a:x&b:y`` (AND) joined by ``|`` (OR)."""

    spec: str
    rules: tuple[tuple[tuple[str, str, str | None], ...], ...]

    @classmethod
    def parse(cls, spec: str) -> Blocking:
        """e.g. ``soundex:given_name|soundex:surname|exact:postcode``; ``none``."""
        if spec.strip() == "none":
            return cls("none", ())
        rules = []
        for conj in spec.split("|"):
            terms = []
            for term in conj.split("&"):
                match = _TERM.fullmatch(term.strip())
                if match is None:
                    raise ValidationError(
                        [FieldViolation("blocking", "syntax", f"bad term {term!r}")]
                    )
                method, width, name = match.groups()
                terms.append((method or "exact", name, width))
            rules.append(tuple(terms))
        return cls(spec, tuple(rules))

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(t[1] for rule in self.rules for t in rule)

    def keys(
        self, columns: Mapping[str, Sequence[str]], rows: int
    ) -> list[list[tuple[str, ...] | None]]:
        """Per rule, each record's key (None: a missing value, never blocked)."""
        out = []
        for rule in self.rules:
            parts = []
            for method, name, width in rule:
                key = _term_key(method, width)
                values = columns.get(name) or [""] * rows
                parts.append([key(v) for v in values])
            out.append(
                [
                    None if any(p == "" for p in combo) else combo
                    for combo in zip(*parts, strict=True)
                ]
            )
        return out
