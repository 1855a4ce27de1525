"""Governed exports: policies as events, requests judged by the policy engine.

Every decision is recorded, allowed or not, with the digest of the policy
that made it and of the exact input it saw (RFC 8785 JSON), so an auditor can
re-run it from the log alone.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

import rfc8785
from eventsourcing.persistence import IntegrityError

from application.base import CommandResult, IdempotencyKey, LedgerApplication
from application.ports import TransformRefusedError
from domain.errors import FieldViolation, NotFoundError, ValidationError
from domain.export import Export, export_input
from domain.keys import SigningKeyRing
from domain.policy import EXPORT_POLICY, Policy, PolicyBinding

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from application.datasets import Datasets
    from application.ports import (
        EventLog,
        LogEntry,
        PolicyEngine,
        Signer,
        SourceFiles,
    )
    from domain.dataset import Dataset

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


POLICY_CACHE = 256


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
        sources: SourceFiles,
    ) -> None:
        super().__init__(log)
        self.datasets = datasets
        self.engine = engine
        self.regions = regions
        self.sources = sources
        self._policies: dict[str, tuple[Policy, int]] = {}
        """Published policies by digest, with their log position (immutable)."""
        self._bindings: dict[UUID, tuple[int, str]] = {}
        """Policy bindings by id: (version, digest) as last loaded."""

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
        """A published policy (immutable: its id is its digest, so it is cached)."""
        cached = self._policies.get(digest)
        if cached is not None:
            return cached[0]
        policy = self._load(Policy.create_id(digest))
        if not isinstance(policy, Policy):
            raise PolicyNotFoundError(digest)
        self._cache_policy(policy, self.policy_position(digest))
        return policy

    def _cache_policy(self, policy: Policy, position: int) -> None:
        if len(self._policies) >= POLICY_CACHE:
            self._policies.clear()
        self._policies[policy.digest] = (policy, position)

    def active_policy(self, tenant: str) -> Policy:
        """The tenant's bound export policy; the built-in one until they publish.

        A binding changes rarely and may change in another process: the
        latest stored version is checked on every call (one indexed row) and
        the aggregate is only rebuilt when it moved.
        """
        binding_id = PolicyBinding.create_id(tenant, EXPORT_POLICY)
        latest = self.recorder.select_events(binding_id, desc=True, limit=1)
        if latest:
            version = latest[0].originator_version
            cached = self._bindings.get(binding_id)
            if cached is not None and cached[0] == version:
                return self.get_policy(cached[1])
            binding = self._load(binding_id)
            if isinstance(binding, PolicyBinding):
                self._bindings[binding_id] = (binding.version, binding.digest)
                return self.get_policy(binding.digest)
        self.publish_policy(
            tenant=tenant, name=EXPORT_POLICY, sources=default_policy_sources()
        )
        return self.active_policy(tenant)

    def policy_position(self, digest: str) -> int:
        """Where the policy's publication sits in the log."""
        cached = self._policies.get(digest)
        if cached is not None:
            return cached[1]
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
        dataset, dataset_position = self.datasets.dataset_at_head(
            tenant=tenant, dataset_id=dataset_id
        )
        self._check_source(tenant, dataset)
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

    def _check_source(self, tenant: str, dataset: Dataset) -> None:
        """The dataset's file must be there and inside the data root (else 422)."""
        try:
            self.sources.resolve(tenant, dataset.location)
        except TransformRefusedError as refusal:
            raise ValidationError(
                [
                    FieldViolation(
                        "datasetId",
                        refusal.reason.replace("_", "-"),
                        f"the dataset's location: {refusal.detail}",
                    )
                ]
            ) from None

    def get_export(self, *, tenant: str, export_id: UUID) -> Export:
        export = self._load(export_id)
        if not isinstance(export, Export) or export.tenant != tenant:
            raise ExportNotFoundError(export_id)
        return export

    def load_export(self, export_id: UUID) -> Export:
        """Any tenant's export (for the pipeline, which runs for all of them)."""
        export = self._load(export_id)
        if not isinstance(export, Export):
            raise ExportNotFoundError(export_id)
        return export

    def dataset_in_force(self, export: Export) -> Dataset:
        """The dataset as it was when the export was decided."""
        dataset: Dataset = self.repository.get(
            export.dataset_id, version=export.dataset_version
        )
        return dataset

    def record_delivery(
        self,
        export_id: UUID,
        *,
        file_name: str,
        content_sha256: str,
        size: int,
        rows: int,
        transforms: Sequence[tuple[str, str, int]],
    ) -> None:
        export = self.load_export(export_id)
        export.deliver(
            file_name=file_name,
            content_sha256=content_sha256,
            size=size,
            rows=rows,
            transforms=transforms,
        )
        self.save(export)

    def record_failure(
        self, export_id: UUID, *, stage: str, reason: str, detail: str = ""
    ) -> None:
        export = self.load_export(export_id)
        export.fail(stage=stage, reason=reason, detail=detail)
        self.save(export)

    def record_proof(
        self,
        export_id: UUID,
        *,
        manifest_sha256: str,
        key_id: str,
        checkpoint_size: int,
    ) -> None:
        export = self.load_export(export_id)
        export.issue_proof(
            manifest_sha256=manifest_sha256,
            key_id=key_id,
            checkpoint_size=checkpoint_size,
        )
        self.save(export)

    def record_signing_key(self, signer: Signer) -> None:
        """Put the active public key in the log (once), before it signs anything."""
        ring = self._load(SigningKeyRing.create_id())
        if not isinstance(ring, SigningKeyRing):
            ring = SigningKeyRing()
        key_id = signer.active_key_id()
        added = ring.add(
            key_id=key_id,
            public_key_pem=signer.public_keys()[key_id],
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if added:
            try:
                self.save(ring)
            except IntegrityError:
                self.record_signing_key(signer)  # another process added one first

    def authorizing_events(self, export: Export) -> list[dict[str, Any]]:
        """[{role, position, hash}] of what authorized the export, in log order."""
        found = [
            (
                "dataset",
                self._entry(export.dataset_id, position=export.dataset_position),
            ),
            (
                "policy",
                self._entry(Policy.create_id(export.policy_digest), topic=".Published"),
            ),
            ("request", self._entry(export.id, topic=".Requested")),
            ("decision", self._entry(export.id, topic=".Decided")),
        ]
        return [
            {"role": role, "position": entry.position, "hash": entry.hash}
            for role, entry in sorted(found, key=lambda pair: pair[1].position)
        ]

    def _entry(
        self, aggregate_id: UUID, *, position: int | None = None, topic: str = ""
    ) -> LogEntry:
        for entry in self.event_log.entries_for(aggregate_id):
            at = position is None or entry.position == position
            if at and entry.topic.endswith(topic):
                return entry
        msg = f"no event {topic or position} of {aggregate_id} in the log"
        raise LookupError(msg)

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
