"""Candidate pairs: ``blocking(record) | ann.knn(embed(record), K)``.

Pairs are int64 codes in a PairSpace: within one set (dedup) a pair (i, j) with
i < j is ``i * n + j``; across two sets (linkage) (i in A, j in B) is
``i * n_b + j``. Sorted unique code arrays make union, intersection and
difference cheap at any size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import numpy.typing as npt

    from application.er.rules import Blocking
    from application.ports import NearestNeighbours


@dataclass(frozen=True, slots=True)
class PairSpace:
    """All pairs of one set (``n_b`` None: dedup) or of two sets (linkage)."""

    n_a: int
    n_b: int | None = None

    @property
    def width(self) -> int:
        return self.n_a if self.n_b is None else self.n_b

    @property
    def total(self) -> int:
        if self.n_b is None:
            return self.n_a * (self.n_a - 1) // 2
        return self.n_a * self.n_b

    def encode(
        self, i: npt.NDArray[np.int64], j: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        """Sorted unique codes of the pairs (i, j); self-pairs dropped in dedup."""
        i = np.asarray(i, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        if self.n_b is None:
            keep = i != j
            i, j = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
        return np.unique(i * self.width + j)

    def decode(
        self, codes: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        return codes // self.width, codes % self.width


def blocked_pairs(
    blocking: Blocking,
    space: PairSpace,
    left: Mapping[str, Sequence[str]],
    right: Mapping[str, Sequence[str]] | None = None,
) -> npt.NDArray[np.int64]:
    """Pairs sharing a block key under any rule (right None: dedup)."""
    found: list[npt.NDArray[np.int64]] = [np.empty(0, dtype=np.int64)]
    keys_a = blocking.keys(left, space.n_a)
    keys_b = blocking.keys(right, space.width) if right is not None else keys_a
    for rule_a, rule_b in zip(keys_a, keys_b, strict=True):
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for j, key in enumerate(rule_b):
            if key is not None:
                groups[key].append(j)
        if right is None:
            for members in groups.values():
                if len(members) > 1:
                    idx = np.asarray(members, dtype=np.int64)
                    a, b = np.triu_indices(len(idx), 1)
                    found.append(space.encode(idx[a], idx[b]))
            continue
        for i, key in enumerate(rule_a):
            partners = groups.get(key) if key is not None else None
            if partners:
                js = np.asarray(partners, dtype=np.int64)
                found.append(np.full(len(js), i, dtype=np.int64) * space.width + js)
    return np.unique(np.concatenate(found))


def ann_pairs(
    neighbours: NearestNeighbours,
    space: PairSpace,
    left: npt.NDArray[np.float32],
    right: npt.NDArray[np.float32] | None,
    k: int,
) -> npt.NDArray[np.int64]:
    """Each record's k nearest (both directions in linkage; self dropped in dedup)."""
    if right is None:
        near = neighbours.search(left, left, k + 1)
        rows = np.repeat(np.arange(len(left), dtype=np.int64), near.shape[1])
        return space.encode(rows, near.reshape(-1))
    a_to_b = neighbours.search(right, left, k)
    b_to_a = neighbours.search(left, right, k)
    i = np.concatenate(
        [
            np.repeat(np.arange(len(left), dtype=np.int64), a_to_b.shape[1]),
            b_to_a.reshape(-1),
        ]
    )
    j = np.concatenate(
        [
            a_to_b.reshape(-1),
            np.repeat(np.arange(len(right), dtype=np.int64), b_to_a.shape[1]),
        ]
    )
    return space.encode(i, j)
