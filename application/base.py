"""The base of every Conductor application: one shared, hash-chained event log."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.utils import Environment

from application.ports import IdempotencyRecord
from domain.errors import IdempotencyKeyReusedError

if TYPE_CHECKING:
    from eventsourcing.domain import Aggregate
    from eventsourcing.persistence import InfrastructureFactory, ProcessRecorder
    from eventsourcing.utils import EnvType

    from application.ports import EventLog


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command did: the aggregate, its version, the log position."""

    id: UUID
    version: int
    position: int | None
    created: bool = False
    replayed: bool = False

    def to_json(self) -> bytes:
        data = asdict(self)
        data["id"] = str(self.id)
        del data["position"], data["replayed"]
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_record(cls, record: IdempotencyRecord) -> CommandResult:
        data = json.loads(record.response)
        return cls(
            id=UUID(data["id"]),
            version=int(data["version"]),
            position=record.position,
            created=bool(data["created"]),
            replayed=True,
        )


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's Idempotency-Key and the fingerprint of the request it came with."""

    key: str
    fingerprint: str


class LedgerApplication(Application[UUID]):
    """An eventsourcing Application over the shared log (not its own database).

    All applications share one events table, so there is one global position
    sequence and one hash chain. Configuration comes only from the log's env,
    never from os.environ.
    """

    name = "ledger"

    def __init__(self, log: EventLog) -> None:
        self.event_log = log
        super().__init__(env=dict(log.env))

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_factory(self, env: Environment) -> InfrastructureFactory:
        del env
        return self.event_log.factory

    def construct_recorder(self) -> ProcessRecorder:
        return self.event_log.recorder  # type: ignore[return-value]

    def close(self) -> None:
        """The log outlives the application: the composition root closes it."""

    def _load(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _replay(
        self, tenant: str, idempotency: IdempotencyKey | None
    ) -> CommandResult | None:
        """The recorded outcome for a repeated Idempotency-Key, if any."""
        if idempotency is None:
            return None
        record = self.event_log.find_idempotency(tenant, idempotency.key)
        if record is None:
            return None
        if record.fingerprint != idempotency.fingerprint:
            raise IdempotencyKeyReusedError(idempotency.key)
        return CommandResult.from_record(record)

    def _commit(
        self,
        tenant: str,
        idempotency: IdempotencyKey | None,
        result: CommandResult,
        *aggregates: Aggregate,
    ) -> CommandResult:
        """Save aggregates (and the idempotency record) in one transaction."""
        kwargs: dict[str, Any] = {}
        if idempotency is not None:
            kwargs["idempotency"] = IdempotencyRecord(
                tenant, idempotency.key, idempotency.fingerprint, result.to_json()
            )
        recordings = self.save(*aggregates, **kwargs)
        position = recordings[-1].notification.id if recordings else None
        return CommandResult(result.id, result.version, position, result.created)
