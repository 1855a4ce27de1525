"""Persisted hnswlib indexes over stored vectors: reload, corruption, rebuild."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np
import pytest
import structlog

from adapters.er.hnsw import HnswIndexes, HnswParams
from adapters.er.store import SqlVectorStore
from adapters.ledger.store import open_ledger
from api.cli.progress import Progress
from tests.integration.server import cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.integration
DIMS = 32


@pytest.fixture
def store(database_url: str) -> Iterator[SqlVectorStore]:
    ledger = open_ledger(database_url, pool_size=2)
    vectors = SqlVectorStore(ledger)
    yield vectors
    vectors.close()
    ledger.close()


def unit_rows(count: int, seed: int, dims: int = DIMS) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dims)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class Rebuilds:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def indexes(root: Path, store: SqlVectorStore, rebuilds: Rebuilds) -> HnswIndexes:
    return HnswIndexes(
        root, store, dims=DIMS, params=HnswParams(m=8, ef=64), on_rebuild=rebuilds
    )


def fill(store: SqlVectorStore, index: HnswIndexes, position: int) -> np.ndarray:
    vectors = unit_rows(300, seed=1)
    ids = [f"r{n}" for n in range(300)]
    for start in (0, 150):  # two batches, as two jobs would add them
        part = slice(start, start + 150)
        labels = store.upsert("acme", "people", ids[part], vectors[part])
        index.add("acme", "people", labels, vectors[part])
    store.set_position("acme", "people", position)
    index.commit("acme", "people", position)
    return vectors


def neighbours(index: HnswIndexes, queries: np.ndarray) -> np.ndarray:
    return index.knn("acme", "people", queries, 10)[0]


def test_a_reloaded_index_answers_like_the_one_that_was_saved(
    store: SqlVectorStore, tmp_path: Path
) -> None:
    """Checksum and position match: loaded as is, no rebuild, same answers."""
    first = indexes(tmp_path, store, Rebuilds())
    vectors = fill(store, first, position=7)
    before = neighbours(first, vectors[:20])
    rebuilds = Rebuilds()
    again = indexes(tmp_path, store, rebuilds)
    assert np.array_equal(neighbours(again, vectors[:20]), before)
    assert again.position("acme", "people") == 7
    assert rebuilds.reasons == []


def test_a_corrupt_index_is_rebuilt_from_the_vectors_with_the_same_candidates(
    store: SqlVectorStore, tmp_path: Path
) -> None:
    """A flipped byte fails the checksum: rebuilt, logged, counted, same answers."""
    first = indexes(tmp_path, store, Rebuilds())
    vectors = fill(store, first, position=7)
    before = neighbours(first, vectors[:50])
    path, meta = first.paths("acme", "people")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))

    rebuilds = Rebuilds()
    again = indexes(tmp_path, store, rebuilds)
    with structlog.testing.capture_logs() as logs:
        after = neighbours(again, vectors[:50])

    assert rebuilds.reasons == ["checksum"]
    assert np.array_equal(after, before)
    line = next(e for e in logs if e["event"] == "er_index_rebuilt")
    assert (line["reason"], line["count"], line["position"]) == ("checksum", 300, 7)
    assert json.loads(meta.read_text())["sha256"] != ""
    assert indexes(tmp_path, store, (fresh := Rebuilds())).position("acme", "people")
    assert fresh.reasons == []  # the rebuilt file is good again


def test_a_requested_rebuild_reports_vectors_of_the_total_once_in_a_pipe(
    store: SqlVectorStore, tmp_path: Path
) -> None:
    """The rebuild tells its callback (vectors added, in all) per chunk; a
    piped Progress prints each as a line in vectors, and the end only once."""
    index = indexes(tmp_path, store, Rebuilds())
    fill(store, index, position=7)
    calls: list[tuple[int, int]] = []
    read, write = os.pipe()
    with os.fdopen(write, "w") as stream:
        progress = Progress(
            "rebuilding index", unit="vectors", stream=stream, delay=0, every=0
        )

        def told(done: int, total: int) -> None:
            calls.append((done, total))
            progress.update(done, total=total)

        size = index.rebuild("acme", "people", progress=told)
        progress.finish(size)
    with os.fdopen(read) as out:
        lines = out.read().splitlines()
    assert size == 300
    assert calls == [(300, 300)]
    assert len(lines) == 1, lines
    assert lines[0].startswith("rebuilding index: 300 vectors of 300 vectors (100.0%)")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [("meta", "load_failed"), ("index", "load_failed"), ("stale", "stale")],
)
def test_other_failures_rebuild_too(
    store: SqlVectorStore, tmp_path: Path, damage: str, reason: str
) -> None:
    """No sidecar, no index file, or vectors newer than the index: rebuilt."""
    first = indexes(tmp_path, store, Rebuilds())
    vectors = fill(store, first, position=7)
    before = neighbours(first, vectors[:20])
    path, meta = first.paths("acme", "people")
    if damage == "meta":
        meta.unlink()
    elif damage == "index":
        path.unlink()
    else:
        store.set_position("acme", "people", 9)
    rebuilds = Rebuilds()
    again = indexes(tmp_path, store, rebuilds)
    assert np.array_equal(neighbours(again, vectors[:20]), before)
    assert rebuilds.reasons == [reason]


def test_conductor_er_index_rebuild_rebuilds_from_the_stored_vectors(
    database_url: str, tmp_path: Path
) -> None:
    """The CLI command rebuilds a tenant's entity set and says how many vectors."""
    var = tmp_path / "var"
    ledger = open_ledger(database_url, pool_size=2)
    store = SqlVectorStore(ledger)
    try:
        vectors = unit_rows(40, seed=3, dims=512)  # the embedder's width
        store.upsert("acme", "people", [f"r{n}" for n in range(40)], vectors)
    finally:
        store.close()
        ledger.close()
    done = cli(
        database_url, var, "er", "index", "rebuild", "--tenant", "acme",
        "--entity-set", "people",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "rebuilt acme/people: 40 vectors" in done.stdout
    assert (var / "er" / "indexes" / "acme" / "people.hnsw").is_file()
