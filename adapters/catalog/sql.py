"""What the SQLite and PostgreSQL catalog views share: row codec, query text and
the facet arithmetic.

Facets come from cross-tabs of (license, region[, purpose]) -> count: grouped
from the matched rows for text searches, else read from the tables the
projection maintains (catalog_facet_lr, catalog_facet_lrp). Disjunctive facets
(each ignores its own filter) and the total then fall out in Python.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from projections.catalog import CatalogQuery, CatalogRow

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 8
FACET_LIMIT = 50
PREFIX_MIN = 3
"""Terms this long or longer also match as prefixes; shorter ones match whole."""

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def search_terms(q: str) -> list[str]:
    """Words of a free-text query (punctuation is never syntax), at most 8."""
    return [w.lower() for w in _WORD.findall(q)][:MAX_TERMS]


def unmatchable(query: CatalogQuery) -> bool:
    """Filters no stored value can equal (stored text never holds NUL)."""
    values = (query.license, query.purpose, query.region, query.tag)
    return any(v is not None and "\x00" in v for v in values)


def words(text: str) -> str:
    """Text as space-separated words, split exactly like search_terms splits."""
    return " ".join(_WORD.findall(text))


def row_params(row: CatalogRow) -> dict[str, Any]:
    return {
        "id": row.id.hex,
        "tenant": row.tenant,
        "name": row.name,
        "description": row.description,
        "license": row.license,
        "purposes": _encode(row.purposes).decode(),
        "retention": row.retention,
        "region": row.region,
        "contract_version": row.contract_version,
        "contract_status": row.contract_status,
        "tags": _encode(row.tags).decode(),
        "owner": row.owner,
        "location": row.location,
        "columns": _encode(row.columns).decode(),
        "upstream": _encode([u.hex for u in row.upstream]).decode(),
        "status": row.status,
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "position": row.position,
    }


def row_from(record: Mapping[str, Any]) -> CatalogRow:
    return CatalogRow(
        id=UUID(record["id"]),
        tenant=record["tenant"],
        name=record["name"],
        description=record["description"],
        license=record["license"],
        purposes=tuple(_decode(record["purposes"])),
        retention=record["retention"],
        region=record["region"],
        contract_version=record["contract_version"],
        contract_status=record["contract_status"],
        tags=tuple(_decode(record["tags"])),
        owner=record["owner"],
        location=record["location"],
        columns=tuple((c[0], c[1]) for c in _decode(record["columns"])),
        upstream=tuple(UUID(u) for u in _decode(record["upstream"])),
        status=record["status"],
        version=int(record["version"]),
        created_at=datetime.fromisoformat(record["created_at"]),
        updated_at=datetime.fromisoformat(record["updated_at"]),
        position=int(record["position"]),
    )


ROW_COLUMNS = (
    "id", "tenant", "name", "description", "license", "purposes", "retention",
    "region", "contract_version", "contract_status", "tags", "owner", "location",
    "columns", "upstream", "status", "version", "created_at", "updated_at",
    "position",
)  # fmt: skip


def search_text(row: CatalogRow) -> tuple[str, str, str, str]:
    """The four searchable fields: name, description, tags, column names."""
    return (
        row.name,
        row.description,
        " ".join(row.tags),
        " ".join(c[0] for c in row.columns),
    )


FACET_TABLES = ("catalog_facet_lr", "catalog_facet_lrp")
"""Per-tenant facet cross-tabs, (tag, license, region) and (tag, license, region,
purpose) -> datasets; tag '' counts every dataset, any other tag its own."""
CELL_COLUMNS = "tenant, status, license, region, purposes, tags"
ALL = ""
"""The tag value of the untagged totals (real tags are non-empty slugs)."""


def facet_deltas(
    old: Iterable[tuple[str, str, str, str, str, str]], new: Iterable[CatalogRow]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """How both cross-tabs move when old rows (as CELL_COLUMNS) become new rows."""
    lr: Counter[tuple[str, ...]] = Counter()
    lrp: Counter[tuple[str, ...]] = Counter()

    def count(
        cell: tuple[str, str, str, str], purposes: Any, tags: Any, n: int
    ) -> None:
        tenant, status, lic, reg = cell
        for tag in (ALL, *tags):
            lr[tenant, status, tag, lic, reg] += n
            for p in purposes:
                lrp[tenant, status, tag, lic, reg, p] += n

    for tenant, status, lic, reg, purposes, tags in old:
        count((tenant, status, lic, reg), _decode(purposes), _decode(tags), -1)
    for row in new:
        count(
            (row.tenant, row.status, row.license, row.region), row.purposes, row.tags, 1
        )
    return (
        [(*k, n) for k, n in lr.items() if n],
        [(*k, n) for k, n in lrp.items() if n],
    )


def crosstabs_from_rows(
    cells: Iterable[tuple[str, str, str, int]],
) -> tuple[list[tuple[str, str, int]], list[tuple[str, str, str, int]]]:
    """(license, region, purposes JSON, n) groups -> the two cross-tabs."""
    lr: Counter[tuple[str, str]] = Counter()
    lrp: Counter[tuple[str, str, str]] = Counter()
    for lic, reg, purposes, n in cells:
        lr[lic, reg] += n
        for p in _decode(purposes):
            lrp[lic, reg, p] += n
    return [(*k, n) for k, n in lr.items()], [(*k, n) for k, n in lrp.items()]


def facets_from(
    lr: Iterable[tuple[str, str, int]],
    lrp: Iterable[tuple[str, str, str, int]],
    query: CatalogQuery,
) -> tuple[dict[str, dict[str, int]], int]:
    """Disjunctive facet counts (each ignores its own filter) and the total."""
    tally = _Tally(query)
    if query.purpose is None:
        for lic, reg, n in lr:
            tally.add(lic, reg, n)
    for lic, reg, pur, n in lrp:
        if tally.lic_ok(lic) and tally.reg_ok(reg):
            tally.purpose[pur] += n
        if pur == query.purpose:
            tally.add(lic, reg, n)
    facets = {
        "license": _top(tally.license),
        "purpose": _top(tally.purpose),
        "region": _top(tally.region),
    }
    return facets, tally.total


class _Tally:
    """Counters for the three facets and the total under one query's filters."""

    def __init__(self, query: CatalogQuery) -> None:
        self.query = query
        self.license: Counter[str] = Counter()
        self.region: Counter[str] = Counter()
        self.purpose: Counter[str] = Counter()
        self.total = 0

    def lic_ok(self, lic: str) -> bool:
        return self.query.license is None or lic == self.query.license

    def reg_ok(self, reg: str) -> bool:
        return self.query.region is None or reg == self.query.region

    def add(self, lic: str, reg: str, n: int) -> None:
        """Count n datasets (already matching any purpose filter) in one cell."""
        if self.reg_ok(reg):
            self.license[lic] += n
        if self.lic_ok(lic):
            self.region[reg] += n
            if self.reg_ok(reg):
                self.total += n


def _top(counts: Counter[str]) -> dict[str, int]:
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:FACET_LIMIT]
    return dict(ranked)


def page_from(
    records: Sequence[Mapping[str, Any]], limit: int
) -> tuple[list[CatalogRow], tuple[Any, int] | None]:
    """Rows of a page fetched with limit + 1, and the cursor if there is more."""
    items = [row_from(r) for r in records[:limit]]
    if len(records) > limit:
        last = records[limit - 1]
        return items, (last["sort_key"], int(last["rid"]))
    return items, None


def fts_match(terms: list[str]) -> str:
    """An FTS5 MATCH expression: every term, quoted; long ones as prefixes."""
    return " ".join(
        '"' + t.replace('"', '""') + ('"*' if len(t) >= PREFIX_MIN else '"')
        for t in terms
    )


def ts_query(terms: list[str]) -> str:
    """A to_tsquery expression: every term; long ones as prefixes (:*)."""
    return " & ".join(f"{t}:*" if len(t) >= PREFIX_MIN else t for t in terms)


ACTIVE_EDGES = (
    "SELECT l.downstream, l.upstream FROM catalog_datasets d "
    "JOIN catalog_lineage l ON l.downstream = d.id "
    "WHERE d.tenant = %s AND d.status = 'active' ORDER BY l.downstream, l.upstream"
)
"""Lineage links whose downstream is active (coverage counts both ends)."""
