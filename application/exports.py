"""Governed exports: policies as events, requests judged by the policy engine.

Every decision is recorded, allowed or not, with the digest of the policy
that made it and of the exact input it saw (RFC 8785 JSON), so an auditor can
re-run it from the log alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import rfc8785
from eventsourcing.persistence import IntegrityError

from application.base import CommandResult, IdempotencyKey, LedgerApplication
from domain.errors import FieldViolation, NotFoundError, ValidationError
from domain.export import Export, export_input
from domain.policy import EXPORT_POLICY, Policy, PolicyBinding

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from application.datasets import Datasets
    from application.ports import EventLog, PolicyEngine

DEFAULT_MODULE = "export.rego"


def default_policy_sources() -> tuple[tuple[str, str], ...]:
    """The built-in export gate shipped with Conductor."""
    source = resources.files("application.policies").joinpath(DEFAULT_MODULE)
    return ((DEFAULT_MODULE, source.read_text(encoding="utf-8")),)


def input_digest(document: dict[str, Any]) -> str:
    """SHA-256 of the RFC 8785 form of a policy input."""
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()


class ExportNotFoundError(NotFoundError):
    def __init__(self, export_id: UUID) -> None:
        self.export_id = export_id
        super().__init__(f"export {export_id} not found")


class PolicyNotFoundError(NotFoundError):
    def __init__(self, digest: str) -> None:
        self.digest = digest
        super().__init__(f"policy {digest} not found")


@dataclass(frozen=True, slots=True)
class PolicyResult:
    digest: str
    position: int | None
    created: bool


@dataclass(frozen=True, slots=True)
class ExportDecision:
    """What the API answers a request with."""

    export_id: UUID
    allow: bool
    reasons: tuple[str, ...]
    policy_digest: str
    input_digest: str
    position: int | None
    replayed: bool = False


class Exports(LedgerApplication):
    """Policy publication and export requests, decisions and their outcome."""

    name = "ledger"

    def __init__(
        self,
        log: EventLog,
        *,
        datasets: Datasets,
        engine: PolicyEngine,
        regions: frozenset[str],
    ) -> None:
        super().__init__(log)
        self.datasets = datasets
        self.engine = engine
        self.regions = regions

    # -- policies ---------------------------------------------------------------

    def publish_policy(
        self,
        *,
        tenant: str,
        name: str,
        sources: Sequence[tuple[str, str]],
    ) -> PolicyResult:
        """Compile, publish (once per digest) and bind the tenant's policy to it."""
        policy = Policy.publish(name=name, sources=sources)
        try:
            self.engine.check(policy.sources)
        except ValueError as error:
            raise ValidationError(
                [FieldViolation("modules", "rego-compile", str(error))]
            ) from None
        existing = self._load(policy.id)
        binding = self._load(PolicyBinding.create_id(tenant, name))
        aggregates: list[Any] = [] if isinstance(existing, Policy) else [policy]
        if isinstance(binding, PolicyBinding):
            if binding.rebind(policy.digest):
                aggregates.append(binding)
        else:
            aggregates.append(
                PolicyBinding(tenant=tenant, name=name, digest=policy.digest)
            )
        if not aggregates:
            return PolicyResult(policy.digest, None, created=False)
        try:
            recordings = self.save(*aggregates)
        except IntegrityError:
            return self.publish_policy(tenant=tenant, name=name, sources=sources)
        return PolicyResult(
            policy.digest, recordings[-1].notification.id, created=existing is None
        )

    def get_policy(self, digest: str) -> Policy:
        policy = self._load(Policy.create_id(digest))
        if not isinstance(policy, Policy):
            raise PolicyNotFoundError(digest)
        return policy

    def active_policy(self, tenant: str) -> Policy:
        """The tenant's bound export policy; the built-in one until they publish."""
        binding = self._load(PolicyBinding.create_id(tenant, EXPORT_POLICY))
        if isinstance(binding, PolicyBinding):
            return self.get_policy(binding.digest)
        self.publish_policy(
            tenant=tenant, name=EXPORT_POLICY, sources=default_policy_sources()
        )
        return self.active_policy(tenant)

    def policy_position(self, digest: str) -> int:
        """Where the policy's publication sits in the log."""
        entries = self.event_log.entries_for(Policy.create_id(digest))
        if not entries:
            raise PolicyNotFoundError(digest)
        return entries[0].position

    # -- exports ----------------------------------------------------------------

    def request_export(
        self,
        *,
        tenant: str,
        dataset_id: UUID,
        preset: str,
        purpose: str,
        destination_region: str,
        requester: str,
        idempotency: IdempotencyKey | None = None,
    ) -> ExportDecision:
        """Judge a request by the tenant's policy and record request and decision."""
        if (replayed := self._replay(tenant, idempotency)) is not None:
            export = self.get_export(tenant=tenant, export_id=replayed.id)
            return self._decision_of(export, replayed.position, replayed=True)
        dataset = self.datasets.get_dataset(tenant=tenant, dataset_id=dataset_id)
        dataset_position = self.datasets.last_position(dataset.id) or 0
        policy = self.active_policy(tenant)
        export = Export.request(
            tenant=tenant,
            dataset=dataset,
            dataset_position=dataset_position,
            preset=preset,
            purpose=purpose,
            destination_region=destination_region,
            requester=requester,
            regions=self.regions,
        )
        document = export_input(
            dataset,
            preset=preset,
            purpose=purpose,
            destination_region=destination_region,
            requester=requester,
        )
        verdict = self.engine.evaluate(policy.digest, policy.sources, document)
        export.decide(
            allow=verdict.allow,
            reasons=verdict.reasons,
            policy_digest=policy.digest,
            policy_position=self.policy_position(policy.digest),
            input_digest=input_digest(document),
            engine=self.engine.engine,
        )
        result = CommandResult(export.id, export.version, None, created=True)
        committed = self._commit(tenant, idempotency, result, export)
        return self._decision_of(export, committed.position)

    def get_export(self, *, tenant: str, export_id: UUID) -> Export:
        export = self._load(export_id)
        if not isinstance(export, Export) or export.tenant != tenant:
            raise ExportNotFoundError(export_id)
        return export

    def export_events(self, export_id: UUID) -> list[tuple[int, str, str]]:
        """(position, topic, hash) of the export's events, in order."""
        return [
            (e.position, e.topic, e.hash) for e in self.event_log.entries_for(export_id)
        ]

    @staticmethod
    def _decision_of(
        export: Export, position: int | None, *, replayed: bool = False
    ) -> ExportDecision:
        return ExportDecision(
            export_id=export.id,
            allow=export.allow,
            reasons=export.reasons,
            policy_digest=export.policy_digest,
            input_digest=export.input_digest,
            position=position,
            replayed=replayed,
        )
