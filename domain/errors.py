"""The domain's error tree. Every error carries the ids it is about."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID


class FieldViolation(NamedTuple):
    """One broken rule on one field (a dotted path, e.g. ``columns[2].name``)."""

    field: str
    rule: str
    message: str


class DomainError(Exception):
    """Base of every business-rule error."""


class ValidationError(DomainError):
    """A command's input breaks one or more field rules."""

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        self.violations = tuple(violations)
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))


class NotFoundError(DomainError):
    """Base of the not-found errors (the API maps them to 404)."""


class ConflictError(DomainError):
    """Base of the state conflicts (the API maps them to 409)."""


class DatasetError(DomainError):
    """Base of the dataset errors."""


class DatasetNotFoundError(DatasetError, NotFoundError):
    def __init__(self, dataset_id: UUID) -> None:
        self.dataset_id = dataset_id
        super().__init__(f"dataset {dataset_id} not found")


class UpstreamNotFoundError(DatasetError, NotFoundError):
    def __init__(self, dataset_id: UUID) -> None:
        self.dataset_id = dataset_id
        super().__init__(f"upstream dataset {dataset_id} not found")


class DatasetRetiredError(DatasetError, ConflictError):
    def __init__(self, dataset_id: UUID) -> None:
        self.dataset_id = dataset_id
        super().__init__(f"dataset {dataset_id} is retired and cannot change")


class DatasetNameTakenError(DatasetError, ConflictError):
    def __init__(self, dataset_id: UUID, name: str) -> None:
        self.dataset_id = dataset_id
        self.name = name
        super().__init__(
            f"a dataset named {name!r} already exists ({dataset_id}) "
            "with a different definition"
        )


class LineageCycleError(DatasetError, ConflictError):
    def __init__(self, cycle: Sequence[UUID]) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join(str(node) for node in self.cycle)
        super().__init__(f"lineage would form a cycle: {path}")


class VersionMismatchError(DomainError):
    """The caller's expected version is not the current one (optimistic lock)."""

    def __init__(self, aggregate_id: UUID, expected: int, actual: int | None) -> None:
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{aggregate_id} is at version {actual}, not {expected}"
            if actual is not None
            else f"{aggregate_id} changed concurrently; expected version {expected}"
        )


class IdempotencyKeyReusedError(DomainError):
    """An Idempotency-Key came back with a different request."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"Idempotency-Key {key!r} was already used for a different request"
        )
