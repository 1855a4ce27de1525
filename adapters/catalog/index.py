"""The catalog's search index: roaring bitmaps and BM25 impacts, in memory.

A cache of the catalog rows, never a second source of truth: the rows and the
tracking position are committed together by the view (ADR 0002), and this
index follows them by position. Each search reads the view's marker (reset
epoch, tracking position) and applies the rows written since the index's own
position, so a search sees at least every event up to the marker it read
(read-your-writes) and a rebuilt view gives a rebuilt index. See
docs/adr/0016-catalog-search-index.md.

Per tenant: a bitmap per facet value (status, license, region, purpose, tag,
contractStatus)
and per word, every word's (rid, impact) postings, the vocabulary and the
(name, rid) order. Totals and facet counts are exact bitmap cardinalities;
ranking scores only the matches, vectorised.
"""

from __future__ import annotations

import math
import threading
import unicodedata
from array import array
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np
from pyroaring import BitMap

from adapters.catalog.sql import FACET_LIMIT, PREFIX_MIN, word_list

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from projections.catalog import CatalogQuery

IndexRecord = tuple[int, str, int, str, str, str, str, str, str, str, str, str]
"""(rid, tenant, position, status, name, description, license, region,
purposes JSON, tags JSON, columns JSON, contract status): what the index
needs of a row."""
INDEX_COLUMNS = (
    "rid, tenant, position, status, name, description, license, region, "
    "purposes, tags, columns, contract_status"
)

# BM25 per field: weight, and the length (in words) a field is normalised to.
# Fixed lengths (not running averages) make a document's impact depend on the
# document alone, so an index built incrementally equals a rebuilt one.
FIELDS = (("name", 10.0, 3.0), ("description", 2.0, 12.0), ("tags", 5.0, 2.0),
          ("columns", 3.0, 4.0))  # fmt: skip
K1, B = 1.2, 0.75
SMALL = 256
"""Up to this many matches, a listing sorts them by name; beyond, it walks the
tenant's name order and keeps the matches (a few hundred steps at most)."""
_decode = msgspec.json.decode
FACET_NAMES = ("license", "purpose", "region", "tag", "contractStatus")
"""The disjunctive facets: each counts the result without its own filter."""


def fold(text: str) -> str:
    """Lower case without diacritics, as FTS5's remove_diacritics did."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def impacts(name: str, description: str, tags: str, columns: str) -> dict[str, float]:
    """Each word's BM25 weight in one dataset, summed over the four fields."""
    out: dict[str, float] = {}
    get = out.get
    for text, (_, weight, norm) in zip(
        (name, description, tags, columns), FIELDS, strict=True
    ):
        tokens = word_list(fold(text))
        if not tokens:
            continue
        scale = K1 * (1 - B + B * len(tokens) / norm)
        counts: dict[str, int] = {}
        for token in tokens:
            counts[token] = counts.get(token, 0) + 1
        for word, tf in counts.items():
            out[word] = get(word, 0.0) + weight * tf * (K1 + 1) / (tf + scale)
    return out


class Postings:
    """One word in one tenant: who has it (bitmap) and how much (impacts)."""

    __slots__ = ("bitmap", "cache", "imps", "rids", "stale")

    def __init__(self) -> None:
        self.bitmap = BitMap()
        self.rids = array("I")
        self.imps = array("d")
        self.stale = False
        self.cache: tuple[Any, Any] | None = None

    def extend(self, rids: list[int], imps: list[float]) -> None:
        self.bitmap.update(rids)
        self.rids.extend(array("I", rids))
        self.imps.extend(array("d", imps))
        self.stale = self.stale or len(self.bitmap) != len(self.rids)
        self.cache = None

    def remove(self, rid: int) -> None:
        self.bitmap.discard(rid)
        self.stale = True
        self.cache = None

    def arrays(self) -> tuple[Any, Any]:
        """(rids, impacts) as numpy arrays, one entry per current holder."""
        if self.cache is None:
            rids = np.array(self.rids, dtype=np.int64)
            imps = np.array(self.imps, dtype=np.float64)
            if self.stale:  # keep each rid's last entry, if it still has the word
                last = len(rids) - 1 - np.unique(rids[::-1], return_index=True)[1]
                rids, imps = rids[last], imps[last]
                live = np.isin(rids, np.array(self.bitmap.to_array(), dtype=np.int64))
                rids, imps = rids[live], imps[live]
                self.rids, self.imps = array("I", rids.tolist()), array("d", imps)
                self.stale = False
            self.cache = (rids, imps)
        return self.cache


@dataclass(slots=True)
class Doc:
    position: int
    tenant: str
    name: str
    cells: tuple[tuple[str, str], ...]
    """(facet, value) pairs, status and tag included."""
    words: tuple[str, ...] | None
    """The words it holds; None when built in bulk (removal then scans)."""


@dataclass
class Tenant:
    all: BitMap = field(default_factory=BitMap)
    cells: dict[tuple[str, str], BitMap] = field(default_factory=dict)
    postings: dict[str, Postings] = field(default_factory=dict)
    vocabulary: list[str] = field(default_factory=list)
    by_name: list[tuple[str, int]] = field(default_factory=list)

    def cell(self, facet: str, value: str | None) -> BitMap | None:
        """The datasets with this value (None: no filter on the facet)."""
        if value is None:
            return None
        return self.cells.get((facet, value), _EMPTY)

    def values(self, facet: str) -> Iterable[tuple[str, BitMap]]:
        return ((v, b) for (f, v), b in self.cells.items() if f == facet)


_EMPTY = BitMap()


class _Pending:
    """Documents to add, gathered per tenant, word and cell, then added in bulk.

    Adding 100,000 documents one posting at a time costs seconds of Python;
    bitmaps and arrays take whole lists at C speed, and the name order and
    vocabulary are sorted once.
    """

    def __init__(self) -> None:
        self.tenants: dict[str, _TenantPending] = {}

    def add(
        self,
        tenant_id: str,
        rid: int,
        name: str,
        cells: Sequence[tuple[str, str]],
        weights: dict[str, float],
    ) -> None:
        tenant = self.tenants.get(tenant_id)
        if tenant is None:
            tenant = self.tenants[tenant_id] = _TenantPending()
        tenant.rids.append(rid)
        tenant.names.append((name, rid))
        for cell in cells:
            tenant.cells.setdefault(cell, []).append(rid)
        words = tenant.words
        for word, weight in weights.items():
            entry = words.get(word)
            if entry is None:
                entry = words[word] = ([], [])
            entry[0].append(rid)
            entry[1].append(weight)

    def flush(self, tenants: dict[str, Tenant]) -> None:
        for tenant_id, pending in self.tenants.items():
            tenant = tenants.setdefault(tenant_id, Tenant())
            tenant.all.update(pending.rids)
            for cell, rids in pending.cells.items():
                tenant.cells.setdefault(cell, BitMap()).update(rids)
            fresh = [w for w in pending.words if w not in tenant.postings]
            for word, (rids, imps) in pending.words.items():
                postings = tenant.postings.get(word)
                if postings is None:
                    postings = tenant.postings[word] = Postings()
                postings.extend(rids, imps)
            tenant.vocabulary = sorted([*tenant.vocabulary, *fresh])
            if len(pending.names) < 64:
                for pair in pending.names:
                    insort(tenant.by_name, pair)
            else:
                tenant.by_name = sorted([*tenant.by_name, *pending.names])
        self.tenants = {}


@dataclass
class _TenantPending:
    rids: list[int] = field(default_factory=list)
    names: list[tuple[str, int]] = field(default_factory=list)
    cells: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    words: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hits:
    """A page of rids in order, their sort keys, and the whole result's counts."""

    rids: Sequence[int]
    keys: Sequence[Any]
    more: bool
    total: int
    facets: dict[str, dict[str, int]]


class CatalogIndex:
    """Every tenant's catalog as bitmaps; follows the view by position."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._epoch: int | None = None
        self._position = -1
        self._docs: dict[int, Doc] = {}
        self._tenants: dict[str, Tenant] = {}
        self._max_rid = 0

    @property
    def position(self) -> int:
        return self._position

    def invalidate(self) -> None:
        """Forget everything (the view was reset or the log moved elsewhere)."""
        with self._lock:
            self._epoch, self._position = None, -1
            self._docs, self._tenants, self._max_rid = {}, {}, 0

    def since(self, epoch: int) -> int:
        """The position above which a view at ``epoch`` has rows to send."""
        with self._lock:
            return self._position if epoch == self._epoch else -1

    def sync(
        self,
        epoch: int,
        position: int,
        records: Sequence[IndexRecord],
        since: int,
    ) -> bool:
        """Catch up with a view at (epoch, position), given its rows above ``since``.

        The rows were read after the marker (so the index then holds every row
        as of ``position`` or later), in a transaction that has ended: the
        Python work of a build must not hold a database transaction open.
        False when the index has fallen below ``since`` meanwhile (reset by
        another thread): read again from ``since(epoch)``.
        """
        with self._lock:
            if epoch != self._epoch:
                self._docs, self._tenants, self._max_rid = {}, {}, 0
                self._epoch, self._position = epoch, -1
            if position <= self._position:
                return True
            if since > self._position:
                return False
            if self._position == -1:
                self._build(list(records))
            else:
                pending = _Pending()
                for record in records:
                    self._apply(record, pending)
                pending.flush(self._tenants)
            self._position = position
            return True

    def _build(self, records: list[IndexRecord]) -> None:
        """Everything from scratch, in bulk (see index_bulk.py)."""
        from adapters.catalog.index_bulk import build  # noqa: PLC0415 - a cycle

        latest: dict[int, IndexRecord] = {}
        for record in records:  # each rid once, its latest version
            seen = latest.get(record[0])
            if seen is None or seen[2] < record[2]:
                latest[record[0]] = record
        by_tenant: dict[str, list[IndexRecord]] = {}
        for record in latest.values():
            by_tenant.setdefault(record[1], []).append(record)
        for tenant_id, rows in by_tenant.items():
            self._tenants[tenant_id] = build(rows, self._docs)
        self._max_rid = max((r[0] for r in records), default=0)

    def _apply(self, record: IndexRecord, pending: _Pending) -> None:
        rid, tenant_id, position, status, name, description = record[:6]
        lic, region, purposes, tags, columns, contract = record[6:]
        old = self._docs.get(rid)
        if old is not None and old.position >= position:
            return
        tenant = self._tenants.setdefault(tenant_id, Tenant())
        if old is not None:
            pending.flush(self._tenants)  # the old entries must be in place
            self._remove(tenant, rid, old)
        tag_list = _decode(tags)
        weights = impacts(
            name,
            description,
            " ".join(tag_list),
            " ".join(c[0] for c in _decode(columns)),
        )
        cells = (("status", status), ("license", lic), ("region", region),
                 *(("purpose", p) for p in _decode(purposes)),
                 *(("tag", t) for t in tag_list),
                 ("contractStatus", contract))  # fmt: skip
        doc = Doc(position, tenant_id, name, cells, tuple(weights))
        self._docs[rid] = doc
        self._max_rid = max(self._max_rid, rid)
        pending.add(tenant_id, rid, name, cells, weights)

    @staticmethod
    def _remove(tenant: Tenant, rid: int, doc: Doc) -> None:
        for cell in doc.cells:
            tenant.cells[cell].discard(rid)
        if doc.words is None:  # built in bulk: find its words (rare: an update)
            for postings in tenant.postings.values():
                if rid in postings.bitmap:
                    postings.remove(rid)
        else:
            for word in doc.words:
                tenant.postings[word].remove(rid)
        del tenant.by_name[bisect_left(tenant.by_name, (doc.name, rid))]

    # -- queries ------------------------------------------------------------------

    def search(self, query: CatalogQuery, terms: Sequence[str]) -> Hits:
        """The page's rids, the total and the disjunctive facets of ``query``."""
        with self._lock:
            tenant = self._tenants.get(query.tenant)
            if tenant is None:
                return Hits([], [], more=False, total=0, facets=_no_facets())
            terms = [fold(t) for t in terms]
            matching = [self._term(tenant, t) for t in terms]
            scope = tenant.all.copy()
            for _, bitmap in sorted(matching, key=lambda m: len(m[1])):
                scope &= bitmap
            if query.status != "any":
                scope &= tenant.cell("status", query.status) or _EMPTY
            facets, matched = _facets(tenant, scope, query)
            if terms and query.sort == "relevance":
                rids, keys, more = self._ranked(tenant, matching, matched, query)
            else:
                rids, keys, more = self._listed(tenant, matched, query)
            return Hits(rids, keys, more=more, total=len(matched), facets=facets)

    @staticmethod
    def _term(tenant: Tenant, term: str) -> tuple[list[str], BitMap]:
        """The words a query term matches (long terms: as a prefix) and who has any."""
        if len(term) < PREFIX_MIN:
            words = [term] if term in tenant.postings else []
        else:
            voc = tenant.vocabulary
            start = bisect_left(voc, term)
            end = bisect_left(voc, term + "\U0010ffff", start)
            words = voc[start:end]
        bitmaps = [tenant.postings[w].bitmap for w in words]
        return words, BitMap.union(*bitmaps) if bitmaps else BitMap()

    def _ranked(
        self,
        tenant: Tenant,
        matching: list[tuple[list[str], BitMap]],
        matched: BitMap,
        query: CatalogQuery,
    ) -> tuple[list[int], list[Any], bool]:
        """Top (limit + 1) of the matches by BM25, then rid; after the cursor."""
        if not matched:
            return [], [], False
        scores = np.zeros(self._max_rid + 1)
        n_all = len(tenant.all)
        for words, bitmap in matching:
            n = len(bitmap)
            idf = math.log(1 + (n_all - n + 0.5) / (n + 0.5))
            for word in words:
                rids, imps = tenant.postings[word].arrays()
                scores[rids] += idf * imps
        cand = np.array(matched.to_array(), dtype=np.int64)
        keys = -scores[cand]
        if query.after is not None:
            after_key, after_rid = float(query.after[0]), query.after[1]
            keep = (keys > after_key) | ((keys == after_key) & (cand > after_rid))
            cand, keys = cand[keep], keys[keep]
        k = query.limit + 1
        if len(cand) > k:  # everything up to the k-th key (ties included), sorted
            threshold = np.partition(keys, k - 1)[k - 1]
            near = keys <= threshold
            cand, keys = cand[near], keys[near]
        order = np.lexsort((cand, keys))[:k]
        rids = cand[order].tolist()
        return rids[: query.limit], keys[order].tolist(), len(rids) > query.limit

    def _listed(
        self, tenant: Tenant, matched: BitMap, query: CatalogQuery
    ) -> tuple[list[int], list[Any], bool]:
        """The next (limit + 1) matches in (name, rid) order, after the cursor."""
        k = query.limit + 1
        after = (str(query.after[0]), query.after[1]) if query.after else None
        if len(matched) <= SMALL:
            pairs = sorted((self._docs[r].name, r) for r in matched)
            start = bisect_right(pairs, after) if after else 0
            page = pairs[start : start + k]
        else:
            start = bisect_right(tenant.by_name, after) if after else 0
            walk = islice(tenant.by_name, start, None)
            page = list(islice((p for p in walk if p[1] in matched), k))
        rids = [r for _, r in page]
        return rids[: query.limit], [n for n, _ in page], len(page) > query.limit


def _no_facets() -> dict[str, dict[str, int]]:
    return {name: {} for name in FACET_NAMES}


def _facets(
    tenant: Tenant, scope: BitMap, query: CatalogQuery
) -> tuple[dict[str, dict[str, int]], BitMap]:
    """Disjunctive facet counts (each ignores its own filter) and the matches."""
    filters = {
        "license": tenant.cell("license", query.license),
        "purpose": tenant.cell("purpose", query.purpose),
        "region": tenant.cell("region", query.region),
        "tag": tenant.cell("tag", query.tag),
        "contractStatus": tenant.cell("contractStatus", query.contract_status),
    }
    facets: dict[str, dict[str, int]] = {}
    for name in FACET_NAMES:
        base = scope
        for other, bitmap in filters.items():
            if other != name and bitmap is not None:
                base = base & bitmap
        counts = [(v, base.intersection_cardinality(b)) for v, b in tenant.values(name)]
        ranked = sorted((kv for kv in counts if kv[1]), key=lambda kv: (-kv[1], kv[0]))
        facets[name] = dict(ranked[:FACET_LIMIT])
    matched = scope
    for bitmap in filters.values():
        if bitmap is not None:
            matched = matched & bitmap
    return facets, matched
