"""hnswlib cosine indexes, one per tenant and entity set, persisted with a checksum.

Next to each index file sits a small JSON sidecar: the SHA-256 of the index
file, the log position the index reflects, its size and parameters. On first
use the index is loaded and checked; a checksum mismatch, a load failure or a
position behind the stored vectors' makes it rebuild from the vector store
(the vectors are the durable data; the graph is derived), with a metric and a
log line. Builds add items on one thread with a fixed seed, so a rebuild
reproduces the graph the incremental adds made.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import hnswlib
import numpy as np
import structlog

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import numpy.typing as npt

    from application.ports import VectorStore

SEED = 100
FORMAT = 1


@dataclass(frozen=True, slots=True)
class HnswParams:
    """Graph degree, build beam and query beam (see ADR 0007 for the tuning)."""

    m: int = 16
    ef_construction: int = 200
    ef: int = 200


def new_index(dims: int, capacity: int, params: HnswParams) -> Any:
    index = hnswlib.Index(space="cosine", dim=dims)
    index.init_index(
        max_elements=max(capacity, 16),
        ef_construction=params.ef_construction,
        M=params.m,
        random_seed=SEED,
    )
    index.set_ef(params.ef)
    return index


def add_items(
    index: Any, labels: npt.NDArray[np.int64], vectors: npt.NDArray[np.float32]
) -> None:
    """Add (or update) items in order on one thread: rebuilds stay reproducible."""
    needed = index.get_current_count() + len(labels)
    if needed > index.get_max_elements():
        index.resize_index(max(needed, index.get_max_elements() * 2))
    index.add_items(vectors, labels, num_threads=1)


def build_index(
    labels: npt.NDArray[np.int64],
    vectors: npt.NDArray[np.float32],
    params: HnswParams,
    *,
    threads: int = 1,
) -> Any:
    """A fresh index over ``vectors`` (threads > 1 is faster, not reproducible)."""
    index = new_index(vectors.shape[1], len(labels), params)
    if threads == 1:
        add_items(index, labels, vectors)
    else:
        index.add_items(vectors, labels, num_threads=threads)
    return index


def knn(
    index: Any, vectors: npt.NDArray[np.float32], k: int, ef: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Labels and cosine similarities of the k nearest (k capped by the size)."""
    size = index.get_current_count()
    k = min(k, size)
    if k == 0 or not len(vectors):
        empty = np.empty((len(vectors), 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    index.set_ef(max(ef, k))
    labels, distances = index.knn_query(vectors, k=k, num_threads=1)
    return labels.astype(np.int64), (1.0 - distances).astype(np.float32)


class HnswSearch:
    """NearestNeighbours over a throwaway index (a resolve batch, an eval set)."""

    def __init__(self, params: HnswParams, *, threads: int = 1) -> None:
        self.params = params
        self.threads = threads

    def search(
        self, base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int
    ) -> npt.NDArray[np.int64]:
        if not len(base):
            return np.empty((len(queries), 0), dtype=np.int64)
        labels = np.arange(len(base), dtype=np.int64)
        index = build_index(labels, base, self.params, threads=self.threads)
        return knn(index, queries, k, self.params.ef)[0]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class HnswIndexes:
    """The persisted indexes of every (tenant, entity set), loaded on demand."""

    def __init__(
        self,
        root: Path,
        store: VectorStore,
        *,
        dims: int,
        params: HnswParams,
        on_rebuild: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root
        self.store = store
        self.dims = dims
        self.params = params
        self._on_rebuild = on_rebuild or (lambda _reason: None)
        self._loaded: dict[tuple[str, str], tuple[Any, int]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def paths(self, tenant: str, entity_set: str) -> tuple[Path, Path]:
        base = self.root / tenant
        return base / f"{entity_set}.hnsw", base / f"{entity_set}.meta.json"

    def _lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def add(
        self,
        tenant: str,
        entity_set: str,
        labels: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        """Add (or update) stored vectors in memory; ``commit`` persists them."""
        key = (tenant, entity_set)
        with self._lock(key):
            index, position = self._get(key)
            add_items(index, labels, vectors)
            self._loaded[key] = (index, position)

    def commit(self, tenant: str, entity_set: str, position: int) -> None:
        """Persist the index as reflecting the log up to ``position``."""
        key = (tenant, entity_set)
        with self._lock(key):
            index, _ = self._get(key)
            self._save(key, index, position)

    def knn(
        self,
        tenant: str,
        entity_set: str,
        vectors: npt.NDArray[np.float32],
        k: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        key = (tenant, entity_set)
        with self._lock(key):
            index, _ = self._get(key)
            return knn(index, vectors, k, self.params.ef)

    def position(self, tenant: str, entity_set: str) -> int:
        key = (tenant, entity_set)
        with self._lock(key):
            return self._get(key)[1]

    def rebuild(
        self,
        tenant: str,
        entity_set: str,
        reason: str = "requested",
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Drop the graph and rebuild it from the stored vectors; returns its size
        (``progress``, if given, gets (vectors added, in all) after each chunk)."""
        key = (tenant, entity_set)
        with self._lock(key):
            index, _ = self._rebuild(key, reason, progress)
            return int(index.get_current_count())

    def forget(self) -> None:
        """Drop the in-memory indexes (the next use loads from disk)."""
        with self._guard:
            self._loaded.clear()

    def _get(self, key: tuple[str, str]) -> tuple[Any, int]:
        loaded = self._loaded.get(key)
        if loaded is None:
            loaded = self._load(key)
            self._loaded[key] = loaded
        return loaded

    def _load(self, key: tuple[str, str]) -> tuple[Any, int]:
        path, meta_path = self.paths(*key)
        stored = self.store.position(*key)
        if not path.exists() and not meta_path.exists():
            if stored == 0:
                return new_index(self.dims, 1024, self.params), 0
            return self._rebuild(key, "missing")
        try:
            meta = json.loads(meta_path.read_text())
            if file_sha256(path) != meta["sha256"]:
                return self._rebuild(key, "checksum")
            if (
                int(meta["position"]) < stored
                or int(meta["count"]) != self.store.count(*key)
                or meta["dims"] != self.dims
            ):
                return self._rebuild(key, "stale")
            index = hnswlib.Index(space="cosine", dim=self.dims)
            index.load_index(str(path), max_elements=int(meta["count"]) + 1024)
            index.set_ef(self.params.ef)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError):
            return self._rebuild(key, "load_failed")
        return index, int(meta["position"])

    def _rebuild(
        self,
        key: tuple[str, str],
        reason: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[Any, int]:
        tenant, entity_set = key
        position = self.store.position(tenant, entity_set)
        count = self.store.count(tenant, entity_set)
        index = new_index(self.dims, count, self.params)
        added = 0
        for labels, vectors in self.store.vectors(tenant, entity_set):
            add_items(index, labels, vectors)
            added += len(labels)
            if progress is not None:
                progress(added, count)
        self._save(key, index, position)
        self._on_rebuild(reason)
        # A fresh logger, not a cached module one: rebuilds are rare, and the
        # line must follow the logging configuration in force (and tests').
        structlog.get_logger("conductor.er").warning(
            "er_index_rebuilt",
            tenant=tenant,
            entity_set=entity_set,
            reason=reason,
            count=int(index.get_current_count()),
            position=position,
        )
        return index, position

    def _save(self, key: tuple[str, str], index: Any, position: int) -> None:
        path, meta_path = self.paths(*key)
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(path.name + ".tmp")
        index.save_index(str(draft))
        meta = {
            "format": FORMAT,
            "sha256": file_sha256(draft),
            "position": position,
            "count": int(index.get_current_count()),
            "dims": self.dims,
            "m": self.params.m,
            "efConstruction": self.params.ef_construction,
        }
        meta_draft = meta_path.with_name(meta_path.name + ".tmp")
        meta_draft.write_text(json.dumps(meta, sort_keys=True))
        draft.replace(path)
        meta_draft.replace(meta_path)
        self._loaded[key] = (index, position)
