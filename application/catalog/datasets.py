"""Dataset registry use cases: register, amend, link lineage, retire, read."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

from eventsourcing.persistence import IntegrityError, StoredEvent

from application.base import CommandResult, IdempotencyKey, LedgerApplication
from domain.catalog.dataset import Dataset
from domain.catalog.lineage import LineageGraph
from domain.errors import (
    DatasetNameTakenError,
    DatasetNotFoundError,
    FieldViolation,
    ValidationError,
    VersionMismatchError,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from uuid import UUID

    from application.ports import EventLog, LogEntry
    from domain.values import DatasetSpec

LINEAGE_RETRIES = 8
HEAD_CACHE = 4096
"""Datasets whose head dataset_at_head keeps (the cache is dropped when full)."""


class Datasets(LedgerApplication):
    """The dataset registry (Dataset and LineageGraph aggregates)."""

    name = "ledger"
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {LineageGraph: 100}

    def __init__(self, log: EventLog, *, regions: frozenset[str]) -> None:
        super().__init__(log)
        self.regions = regions
        self._heads: dict[UUID, tuple[int, Dataset, int]] = {}
        """dataset_at_head's answers: id -> (version, dataset, position)."""

    def register_dataset(
        self,
        *,
        tenant: str,
        spec: DatasetSpec,
        upstream: Sequence[UUID] = (),
        idempotency: IdempotencyKey | None = None,
    ) -> CommandResult:
        """Register a dataset under its natural key (tenant, name).

        The identical registration again returns the existing dataset with no
        new event; a different one under the same name is a conflict.
        """
        if (replayed := self._replay(tenant, idempotency)) is not None:
            return replayed
        for _ in range(LINEAGE_RETRIES):
            dataset = Dataset.register(
                tenant=tenant, spec=spec, upstream=upstream, regions=self.regions
            )
            # No look-up first: the natural key makes a repeat conflict on the
            # event store's primary key, and only then do we compare.
            aggregates: list[Any] = [dataset]
            if dataset.upstream:
                self._check_upstream(tenant, dataset.upstream)
                graph = self._graph(tenant)
                graph.add_edges(dataset.id, dataset.upstream)
                aggregates.append(graph)
            result = CommandResult(dataset.id, dataset.version, None, created=True)
            try:
                return self._commit(tenant, idempotency, result, *aggregates)
            except IntegrityError:
                if (replayed := self._replay(tenant, idempotency)) is not None:
                    return replayed
                if (same := self._same_registration(dataset)) is not None:
                    return same
                # Otherwise the lineage graph moved under us: try again.
        raise VersionMismatchError(LineageGraph.create_id(tenant), 0, None)

    def amend_dataset(
        self,
        *,
        tenant: str,
        dataset_id: UUID,
        changes: Mapping[str, Any],
        expected_version: int,
        idempotency: IdempotencyKey | None = None,
    ) -> CommandResult:
        """Apply a partial update to the spec, if the caller saw the latest version."""
        if (replayed := self._replay(tenant, idempotency)) is not None:
            return replayed
        dataset = self.get_dataset(tenant=tenant, dataset_id=dataset_id)
        if dataset.version != expected_version:
            raise VersionMismatchError(dataset_id, expected_version, dataset.version)
        spec = dataclasses.replace(dataset.spec, **changes)
        if not dataset.amend(spec, regions=self.regions):
            return CommandResult(dataset.id, dataset.version, None)
        result = CommandResult(dataset.id, dataset.version, None)
        try:
            return self._commit(tenant, idempotency, result, dataset)
        except IntegrityError:
            if (replayed := self._replay(tenant, idempotency)) is not None:
                return replayed
            raise VersionMismatchError(dataset_id, expected_version, None) from None

    def link_lineage(
        self,
        *,
        tenant: str,
        dataset_id: UUID,
        upstream: Sequence[UUID],
        idempotency: IdempotencyKey | None = None,
    ) -> CommandResult:
        """Add upstream datasets; refuses unknown ids and any cycle."""
        if (replayed := self._replay(tenant, idempotency)) is not None:
            return replayed
        if not upstream:
            raise ValidationError(
                [FieldViolation("upstream", "non-empty", "must hold at least one id")]
            )
        for _ in range(LINEAGE_RETRIES):
            dataset = self.get_dataset(tenant=tenant, dataset_id=dataset_id)
            self._check_upstream(tenant, upstream)
            if not dataset.link_upstream(upstream):  # also refuses itself
                return CommandResult(dataset.id, dataset.version, None)
            graph = self._graph(tenant)
            graph.add_edges(dataset.id, upstream)
            result = CommandResult(dataset.id, dataset.version, None)
            try:
                return self._commit(tenant, idempotency, result, dataset, graph)
            except IntegrityError:
                if (replayed := self._replay(tenant, idempotency)) is not None:
                    return replayed
        raise VersionMismatchError(dataset_id, 0, None)

    def retire_dataset(
        self,
        *,
        tenant: str,
        dataset_id: UUID,
        reason: str = "",
        expected_version: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> CommandResult:
        """Retire a dataset (an event; nothing is deleted). Idempotent."""
        if (replayed := self._replay(tenant, idempotency)) is not None:
            return replayed
        dataset = self.get_dataset(tenant=tenant, dataset_id=dataset_id)
        if expected_version is not None and dataset.version != expected_version:
            raise VersionMismatchError(dataset_id, expected_version, dataset.version)
        if not dataset.retire(reason):
            return CommandResult(dataset.id, dataset.version, None)
        result = CommandResult(dataset.id, dataset.version, None)
        try:
            return self._commit(tenant, idempotency, result, dataset)
        except IntegrityError:
            if (replayed := self._replay(tenant, idempotency)) is not None:
                return replayed
            raise VersionMismatchError(dataset_id, dataset.version - 1, None) from None

    def get_dataset(self, *, tenant: str, dataset_id: UUID) -> Dataset:
        """The dataset, if it exists and belongs to the tenant (else not found)."""
        dataset = self._load(dataset_id)
        if not isinstance(dataset, Dataset) or dataset.tenant != tenant:
            raise DatasetNotFoundError(dataset_id)
        return dataset

    def dataset_at_head(self, *, tenant: str, dataset_id: UUID) -> tuple[Dataset, int]:
        """The dataset and the log position of its latest event (read-only).

        A version's state and position never change, so the answer is kept
        per dataset and reused while the latest stored version (one indexed
        row, checked every call) is the same; any process may have amended it.
        """
        latest = self.recorder.select_events(dataset_id, desc=True, limit=1)
        cached = self._heads.get(dataset_id)
        if latest and cached and cached[0] == latest[0].originator_version:
            if cached[1].tenant != tenant:
                raise DatasetNotFoundError(dataset_id)
            return cached[1], cached[2]
        dataset, position = self._read_head(tenant, dataset_id)
        if len(self._heads) >= HEAD_CACHE:
            self._heads.clear()
        self._heads[dataset_id] = (dataset.version, dataset, position)
        return dataset, position

    def _read_head(self, tenant: str, dataset_id: UUID) -> tuple[Dataset, int]:
        entries = self.event_log.entries_for(dataset_id)
        dataset: Any = None
        for e in entries:
            stored = StoredEvent(e.originator_id, e.version, e.topic, e.state)
            event: Any = self.mapper.to_domain_event(stored)
            dataset = event.mutate(dataset)
        if not isinstance(dataset, Dataset) or dataset.tenant != tenant:
            raise DatasetNotFoundError(dataset_id)
        return dataset, entries[-1].position

    def dataset_history(self, *, tenant: str, dataset_id: UUID) -> Sequence[LogEntry]:
        """The dataset's events with their chain hashes, oldest first."""
        self.get_dataset(tenant=tenant, dataset_id=dataset_id)
        return self.event_log.entries_for(dataset_id)

    def dataset_histories(
        self, *, tenant: str, dataset_ids: Sequence[UUID]
    ) -> dict[UUID, Sequence[LogEntry]]:
        """``dataset_history`` of many datasets in one read of the log; those
        that are not datasets of the tenant are left out. The tenant is the
        registration's (an event each, decoded; it never changes)."""
        by_id: dict[UUID, list[LogEntry]] = {}
        for entry in self.event_log.entries_for_many(dataset_ids):
            by_id.setdefault(entry.originator_id, []).append(entry)
        return {
            dataset_id: entries
            for dataset_id, entries in by_id.items()
            if self._registered_in(tenant, entries[0])
        }

    def _registered_in(self, tenant: str, first: LogEntry) -> bool:
        stored = StoredEvent(
            first.originator_id, first.version, first.topic, first.state
        )
        event = self.mapper.to_domain_event(stored)
        return isinstance(event, Dataset.Registered) and event.tenant == tenant

    def last_position(self, dataset_id: UUID) -> int | None:
        """The log position of the dataset's latest event."""
        entries = self.event_log.entries_for(dataset_id)
        return entries[-1].position if entries else None

    def _same_registration(self, candidate: Dataset) -> CommandResult | None:
        """The existing dataset if it was registered exactly like ``candidate``."""
        existing = self._load(candidate.id)
        if existing is None:
            return None
        first: Dataset = self.repository.get(candidate.id, version=1)
        if first.spec != candidate.spec or first.upstream != candidate.upstream:
            raise DatasetNameTakenError(candidate.id, candidate.name)
        return CommandResult(existing.id, existing.version, None)

    def _check_upstream(self, tenant: str, upstream: Sequence[UUID]) -> None:
        missing = [
            FieldViolation(f"upstream[{i}]", "exists", f"no dataset {u} in this tenant")
            for i, u in enumerate(upstream)
            if not isinstance(d := self._load(u), Dataset) or d.tenant != tenant
        ]
        if missing:
            raise ValidationError(missing)

    def _graph(self, tenant: str) -> LineageGraph:
        graph = self._load(LineageGraph.create_id(tenant))
        if isinstance(graph, LineageGraph):
            return graph
        return LineageGraph(tenant=tenant)
