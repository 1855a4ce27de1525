"""What the SQLite and PostgreSQL catalog views share: the row codec, query
terms and the search over the in-memory index (adapters/catalog/index.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from projections.catalog import CatalogPage, CatalogQuery, CatalogRecord, CatalogRow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from adapters.catalog.index import CatalogIndex, IndexRecord

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


def word_list(text: str) -> list[str]:
    """The words of a text, split exactly like search_terms splits."""
    return _WORD.findall(text)


def edges_of(rows: Iterable[CatalogRecord]) -> list[tuple[str, str, str]]:
    """(tenant, downstream, upstream) lineage rows of stored rows, hex ids."""
    return [
        (r.tenant, r.id, up)
        for r in rows
        if r.upstream != "[]"
        for up in _decode(r.upstream)
    ]


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


OBSOLETE = (
    "catalog_fts",
    "catalog_facet_lr",
    "catalog_facet_lrp",
    "catalog_purposes",
    "catalog_tags",
)
"""Tables of the SQL search (ADR 0005) that the index replaced: dropped on start."""
OBSOLETE_INDEXES = ("catalog_by_license", "catalog_by_region", "catalog_by_name")
"""catalog_by_name: listings sort in the index now; its random insert position
cost a page write per new row (catalog_by_tenant replaces it)."""


Changes = tuple[int, int, int, list["IndexRecord"]]
"""(epoch, position, since, rows above since) read in one view transaction."""


def search(
    index: CatalogIndex,
    query: CatalogQuery,
    changes: Callable[[Callable[[int], int]], Changes],
    fetch: Callable[[list[int]], Iterable[Mapping[str, Any]]],
) -> CatalogPage:
    """Bring the index up to the view's marker, search it, fetch the page's rows.

    ``changes(since)`` reads the marker (reset epoch, tracking position), then
    the rows above ``since(epoch)``, in one read transaction; ``fetch`` reads
    the page's rows in another (the index is searched between, in Python).
    """
    terms = search_terms(query.q)
    if (query.q.strip() and not terms) or unmatchable(query):
        return CatalogPage(items=[], total=0, facets={}, next_after=None)
    for _ in range(5):  # another thread may reset the index between the two
        epoch, position, since, records = changes(index.since)
        if index.sync(epoch, position, records, since):
            break
    hits = index.search(query, terms)
    by_rid = {int(r["rid"]): row_from(r) for r in fetch(list(hits.rids))}
    kept = [
        (key, rid)
        for key, rid in zip(hits.keys, hits.rids, strict=False)
        if rid in by_rid
    ]
    next_after = None
    if hits.more and hits.rids:
        next_after = (hits.keys[len(hits.rids) - 1], hits.rids[-1])
    return CatalogPage(
        items=[by_rid[rid] for _, rid in kept],
        total=hits.total,
        facets=hits.facets,
        next_after=next_after,
        afters=kept,
    )


ACTIVE_EDGES = (
    "SELECT l.downstream, l.upstream FROM catalog_datasets d "
    "JOIN catalog_lineage l ON l.downstream = d.id "
    "WHERE d.tenant = %s AND d.status = 'active' ORDER BY l.downstream, l.upstream"
)
"""Lineage links whose downstream is active (coverage counts both ends)."""
