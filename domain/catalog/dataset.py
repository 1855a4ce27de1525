"""The Dataset aggregate: the registry entry every governed record set starts from."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import DatasetRetiredError, FieldViolation, ValidationError
from domain.topics import keep_stored_topics
from domain.values import Column, DatasetSpec

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

SPEC_FIELDS = tuple(DatasetSpec.__dataclass_fields__)


def _columns(raw: Iterable[Sequence[str]]) -> tuple[Column, ...]:
    # Stored events decode tuples as lists: rebuild the value objects on replay.
    return tuple(Column(str(c[0]), str(c[1])) for c in raw)


class Dataset(Aggregate):
    """A tenant's dataset: registry fields, columns, lineage and lifecycle."""

    class Registered(Aggregate.Created):
        tenant: str
        name: str
        description: str
        license: str
        purposes: tuple[str, ...]
        retention: str
        region: str
        contract_version: str
        contract_status: str
        tags: tuple[str, ...]
        owner: str
        location: str
        columns: tuple[Column, ...]
        upstream: tuple[UUID, ...]

    class Amended(Aggregate.Event):
        """Carries the whole spec in force after the change, and what changed."""

        name: str
        description: str
        license: str
        purposes: tuple[str, ...]
        retention: str
        region: str
        contract_version: str
        contract_status: str
        tags: tuple[str, ...]
        owner: str
        location: str
        columns: tuple[Column, ...]
        changed: tuple[str, ...]

    class LineageLinked(Aggregate.Event):
        added: tuple[UUID, ...]
        upstream: tuple[UUID, ...]

    class Retired(Aggregate.Event):
        reason: str

    @staticmethod
    def create_id(tenant: str, name: str) -> UUID:
        """Natural key: one dataset per (tenant, name)."""
        return uuid5(NAMESPACE_URL, f"/tenants/{tenant}/datasets/{name}")

    @event(Registered)
    def __init__(
        self,
        *,
        tenant: str,
        name: str,
        description: str,
        license: str,  # noqa: A002
        purposes: tuple[str, ...],
        retention: str,
        region: str,
        contract_version: str,
        contract_status: str,
        tags: tuple[str, ...],
        owner: str,
        location: str,
        columns: tuple[Column, ...],
        upstream: tuple[UUID, ...],
    ) -> None:
        self.tenant = tenant
        self._set_spec(
            name=name,
            description=description,
            license=license,
            purposes=purposes,
            retention=retention,
            region=region,
            contract_version=contract_version,
            contract_status=contract_status,
            tags=tags,
            owner=owner,
            location=location,
            columns=columns,
        )
        self.upstream: tuple[UUID, ...] = tuple(upstream)
        self.retired = False
        self.retired_reason = ""

    @classmethod
    def register(
        cls,
        *,
        tenant: str,
        spec: DatasetSpec,
        upstream: Sequence[UUID] = (),
        regions: frozenset[str],
    ) -> Dataset:
        """Validate a spec and register it as a new dataset."""
        spec.validate(regions=regions)
        links = _unique_links(upstream, self_id=cls.create_id(tenant, spec.name))
        return cls(tenant=tenant, upstream=links, **spec.as_fields())

    @property
    def spec(self) -> DatasetSpec:
        """The spec in force."""
        return DatasetSpec(**{name: getattr(self, name) for name in SPEC_FIELDS})

    def amend(self, spec: DatasetSpec, *, regions: frozenset[str]) -> bool:
        """Replace the spec; returns False (no event) when nothing changes."""
        self._check_not_retired()
        spec.validate(regions=regions)
        if spec.name != self.name:
            raise ValidationError(
                [FieldViolation("name", "immutable", "a dataset cannot be renamed")]
            )
        current = self.spec
        changed = tuple(
            n for n in SPEC_FIELDS if getattr(spec, n) != getattr(current, n)
        )
        if not changed:
            return False
        self._amend(changed=changed, **spec.as_fields())
        return True

    @event(Amended)
    def _amend(
        self,
        *,
        name: str,
        description: str,
        license: str,  # noqa: A002
        purposes: tuple[str, ...],
        retention: str,
        region: str,
        contract_version: str,
        contract_status: str,
        tags: tuple[str, ...],
        owner: str,
        location: str,
        columns: tuple[Column, ...],
        changed: tuple[str, ...],
    ) -> None:
        del changed  # recorded in the event, not needed in state
        self._set_spec(
            name=name,
            description=description,
            license=license,
            purposes=purposes,
            retention=retention,
            region=region,
            contract_version=contract_version,
            contract_status=contract_status,
            tags=tags,
            owner=owner,
            location=location,
            columns=columns,
        )

    def link_upstream(self, upstream: Sequence[UUID]) -> tuple[UUID, ...]:
        """Add upstream datasets; returns the ids actually added (maybe none)."""
        self._check_not_retired()
        links = _unique_links(upstream, self_id=self.id)
        added = tuple(u for u in links if u not in self.upstream)
        if added:
            self._link(added=added, upstream=self.upstream + added)
        return added

    @event(LineageLinked)
    def _link(self, *, added: tuple[UUID, ...], upstream: tuple[UUID, ...]) -> None:
        del added
        self.upstream = tuple(UUID(str(u)) for u in upstream)

    def retire(self, reason: str = "") -> bool:
        """Retire the dataset; history stays. Returns False if already retired."""
        if self.retired:
            return False
        if len(reason) > 500:
            raise ValidationError(
                [
                    FieldViolation(
                        "reason", "max-length", "must be at most 500 characters"
                    )
                ]
            )
        self._retire(reason=reason)
        return True

    @event(Retired)
    def _retire(self, *, reason: str) -> None:
        self.retired = True
        self.retired_reason = reason

    def _check_not_retired(self) -> None:
        if self.retired:
            raise DatasetRetiredError(self.id)

    def _set_spec(self, **spec: Any) -> None:
        self.name: str = spec["name"]
        self.description: str = spec["description"]
        self.license: str = spec["license"]
        self.purposes: tuple[str, ...] = tuple(spec["purposes"])
        self.retention: str = spec["retention"]
        self.region: str = spec["region"]
        self.contract_version: str = spec["contract_version"]
        self.contract_status: str = spec["contract_status"]
        self.tags: tuple[str, ...] = tuple(spec["tags"])
        self.owner: str = spec["owner"]
        self.location: str = spec["location"]
        self.columns: tuple[Column, ...] = _columns(spec["columns"])


def _unique_links(upstream: Sequence[UUID], *, self_id: UUID) -> tuple[UUID, ...]:
    violations = [
        FieldViolation(f"upstream[{i}]", "not-self", "a dataset cannot feed itself")
        for i, u in enumerate(upstream)
        if u == self_id
    ]
    if violations:
        raise ValidationError(violations)
    return tuple(dict.fromkeys(upstream))


keep_stored_topics(__name__, stored_as="domain.dataset")
