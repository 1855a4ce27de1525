"""The catalog's in-memory search index against brute force over the same rows."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter

from adapters.catalog.index import CatalogIndex, IndexRecord
from projections.catalog import CatalogQuery

WORDS = ["orders", "order", "ordinal", "payments", "café", "ledger", "ds", "03"]
LICENSES, REGIONS, PURPOSES, TAGS, CONTRACTS = (
    ["A", "B", "C"],
    ["EU", "US"],
    ["p", "q"],
    ["x", "y"],
    ["active", "draft", ""],
)


def record(rid: int, position: int, rng: random.Random, tenant: str) -> IndexRecord:
    return (
        rid,
        tenant,
        position,
        rng.choice(["active", "active", "retired"]),
        f"ds-{rid:03d}",
        " ".join(rng.choices(WORDS, k=5)),
        rng.choice(LICENSES),
        rng.choice(REGIONS),
        json.dumps(sorted(set(rng.choices(PURPOSES, k=2)))),
        json.dumps(sorted(set(rng.choices(TAGS, k=rng.randint(0, 2))))),
        json.dumps([["email", "pii.email"]]),
        rng.choice(CONTRACTS),
    )


def matches(rec: IndexRecord, query: CatalogQuery, ignore: str = "") -> bool:
    """Brute force: does one row match the query (optionally ignoring a facet)?"""
    words = {
        w.replace("é", "e") for w in f"{rec[4]} {rec[5]}".replace("-", " ").split()
    }
    words |= set(json.loads(rec[9])) | {"email"}
    for term in query.q.split():
        ok = term in words or (
            len(term) >= 3 and any(w.startswith(term) for w in words)
        )
        if not ok:
            return False
    purposes, tags = json.loads(rec[8]), json.loads(rec[9])
    return (
        rec[1] == query.tenant
        and query.status in ("any", rec[3])
        and (ignore == "tag" or query.tag is None or query.tag in tags)
        and (ignore == "contractStatus" or query.contract_status in (None, rec[11]))
        and (ignore == "license" or query.license in (None, rec[6]))
        and (ignore == "region" or query.region in (None, rec[7]))
        and (ignore == "purpose" or query.purpose is None or query.purpose in purposes)
    )


def expected(rows: list[IndexRecord], query: CatalogQuery) -> tuple[int, dict]:
    facets = {}
    for name, pick in (("license", 6), ("region", 7), ("purpose", 8), ("tag", 9),
                       ("contractStatus", 11)):  # fmt: skip
        counts: Counter[str] = Counter()
        for rec in rows:
            if matches(rec, query, ignore=name):
                counts.update(json.loads(rec[pick]) if pick in (8, 9) else [rec[pick]])
        facets[name] = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return sum(matches(r, query) for r in rows), facets


def index_of(rows: list[IndexRecord], *, bulk: bool) -> CatalogIndex:
    index = CatalogIndex()
    if bulk:
        assert index.sync(1, max(r[2] for r in rows), rows, -1)
        return index
    for rec in rows:  # one row at a time: the incremental path
        assert index.sync(1, rec[2], [rec], index.since(1))
    return index


def queries(rng: random.Random) -> list[CatalogQuery]:
    terms = ["ord", "order", "cafe", "ds", "03", "led"]
    return [
        CatalogQuery(
            tenant=rng.choice(["acme", "acme", "other"]),
            q=" ".join(rng.sample(terms, k=rng.randint(0, 2))),
            license=rng.choice([None, *LICENSES]),
            region=rng.choice([None, None, *REGIONS]),
            purpose=rng.choice([None, None, *PURPOSES]),
            tag=rng.choice([None, None, *TAGS]),
            contract_status=rng.choice([None, None, *CONTRACTS]),
            status=rng.choice(["active", "retired", "any"]),
            limit=7,
        )
        for _ in range(60)
    ]


def pages(index: CatalogIndex, query: CatalogQuery) -> list[tuple[list[int], list]]:
    """Every page of a query, following its cursor."""
    out = []
    while True:
        hits = index.search(query, query.q.split())
        out.append((list(hits.rids), list(hits.keys)))
        if not hits.more:
            return out
        after = (hits.keys[len(hits.rids) - 1], hits.rids[-1])
        query = dataclasses.replace(query, after=after)


def test_totals_facets_and_pages_equal_brute_force_and_bulk_equals_incremental() -> (
    None
):
    """Exact counts, every match paged once, and both build paths agree."""
    rng = random.Random(5)
    rows = [record(i, i, rng, "acme" if i % 4 else "other") for i in range(1, 160)]
    # Updates: the same datasets again with new content, as later positions.
    rows += [
        record(i, 160 + i, rng, "acme" if i % 4 else "other") for i in range(1, 40)
    ]
    current = {r[0]: r for r in rows}  # the last version of each row
    bulk, incremental = index_of(rows, bulk=True), index_of(rows, bulk=False)
    for query in queries(rng):
        hits = bulk.search(query, query.q.split())
        total, facets = expected(list(current.values()), query)
        assert (hits.total, hits.facets) == (total, facets), query
        walked = pages(bulk, query)
        assert walked == pages(incremental, query), query
        seen = [rid for rids, _ in walked for rid in rids]
        assert len(seen) == len(set(seen)) == total, query
        by_name = dataclasses.replace(query, sort="name")
        named = [rid for rids, _ in pages(bulk, by_name) for rid in rids]
        assert named == sorted(seen, key=lambda r: (current[r][4], r)), query
        assert pages(incremental, by_name) == pages(bulk, by_name), query


def test_a_reset_epoch_forgets_the_old_rows() -> None:
    """After the view's reset (a new epoch) only the new rows are searched."""
    rng = random.Random(1)
    index = index_of([record(i, i, rng, "acme") for i in range(1, 30)], bulk=True)
    fresh = [record(100, 1, rng, "acme")]
    assert not index.sync(2, 1, fresh, 29)  # read for the old epoch: refused
    assert index.sync(2, 1, fresh, index.since(2))
    hits = index.search(CatalogQuery(tenant="acme", status="any"), [])
    assert list(hits.rids) == [100]
    assert hits.total == 1


def test_tag_and_contract_facets_count_one_tenant_and_filter_disjunctively() -> None:
    """Exact counts of the new facets; another tenant's tags are never counted."""
    rng = random.Random(3)

    def row(rid: int, tenant: str, tags: list[str], contract: str) -> IndexRecord:
        base = record(rid, rid, rng, tenant)
        return (*base[:3], "active", *base[4:9], json.dumps(tags), base[10], contract)

    rows = [
        row(1, "acme", ["x", "y"], "active"),
        row(2, "acme", ["x"], "draft"),
        row(3, "acme", [], "active"),
        row(4, "other", ["x", "secret"], "active"),
        row(5, "other", ["secret"], "draft"),
    ]
    for bulk in (True, False):
        index = index_of(rows, bulk=bulk)
        everything = index.search(CatalogQuery(tenant="acme"), [])
        assert everything.total == 3
        assert everything.facets["tag"] == {"x": 2, "y": 1}
        assert everything.facets["contractStatus"] == {"active": 2, "draft": 1}
        tagged = index.search(CatalogQuery(tenant="acme", tag="x"), [])
        assert (tagged.total, sorted(tagged.rids)) == (2, [1, 2])
        # Disjunctive: the tag facet ignores its own filter, the others don't.
        assert tagged.facets["tag"] == {"x": 2, "y": 1}
        assert tagged.facets["contractStatus"] == {"active": 1, "draft": 1}
        drafts = index.search(
            CatalogQuery(tenant="acme", tag="x", contract_status="draft"), []
        )
        assert (drafts.total, list(drafts.rids)) == (1, [2])
        assert drafts.facets["tag"] == {"x": 1}
        assert drafts.facets["contractStatus"] == {"active": 1, "draft": 1}
        other = index.search(CatalogQuery(tenant="other"), [])
        assert other.facets["tag"] == {"secret": 2, "x": 1}
        leak = index.search(CatalogQuery(tenant="acme", tag="secret"), [])
        assert (leak.total, list(leak.rids)) == (0, [])
        assert "secret" not in leak.facets["tag"]
