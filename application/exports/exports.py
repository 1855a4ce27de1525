"""Governed exports: requests judged by the platform floor and the tenant's gate.

Every decision is recorded, allowed or not, with the digests of both policies
that made it and of the exact input they saw (RFC 8785 JSON), so an auditor can
re-run it from the log alone. While the manual-review backout is on, an export
the floor allows waits for a person in the tenant to approve or reject it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError

from application.base import CommandResult, IdempotencyKey, LedgerApplication
from application.exports.gate import input_digest, judge
from application.exports.policy_store import ExportPolicies
from application.ports import TransformRefusedError
from domain.errors import FieldViolation, NotFoundError, ValidationError
from domain.exports.export import Export
from domain.exports.policy import Policy
from domain.exports.request import export_input
from domain.ledger.keys import SigningKeyRing

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from application.catalog.datasets import Datasets
    from application.ports import (
        EventLog,
        LogEntry,
        PolicyEngine,
        Signer,
        SourceFiles,
    )
    from domain.catalog.dataset import Dataset


class ExportNotFoundError(NotFoundError):
    def __init__(self, export_id: UUID) -> None:
        self.export_id = export_id
        super().__init__(f"export {export_id} not found")


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
    floor_digest: str = ""
    floor_reasons: tuple[str, ...] = ()
    policy_reasons: tuple[str, ...] = ()
    limit: str = ""
    pending_review: bool = False


class Exports(LedgerApplication):
    """Export requests, their decisions and reviews, and what happened next."""

    name = "ledger"

    def __init__(
        self,
        log: EventLog,
        *,
        datasets: Datasets,
        engine: PolicyEngine,
        regions: frozenset[str],
        sources: SourceFiles,
        review_required: Callable[[], bool] = lambda: False,
    ) -> None:
        super().__init__(log)
        self.datasets = datasets
        self.engine = engine
        self.regions = regions
        self.sources = sources
        self.policies = ExportPolicies(log, engine=engine)
        self.review_required = review_required
        """Whether the manual-review backout is on (asked at every decision)."""

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
        floor = self.policies.platform_policy()
        policy = self.policies.active_policy(tenant)
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
        gate = judge(self.engine, floor, policy, document, tenant=tenant)
        export.decide(
            allow=gate.allow,
            reasons=gate.reasons,
            policy_digest=policy.digest,
            policy_position=self.policies.policy_position(policy.digest),
            input_digest=input_digest(document),
            engine=self.engine.engine,
            floor_digest=floor.digest,
            floor_position=self.policies.policy_position(floor.digest),
            floor_reasons=gate.floor.reasons,
            policy_reasons=gate.tenant.reasons,
            limit=gate.limit,
            review=gate.floor.allow and self.review_required(),
        )
        result = CommandResult(export.id, export.version, None, created=True)
        committed = self._commit(tenant, idempotency, result, export)
        return self._decision_of(export, committed.position)

    def review_export(
        self,
        *,
        tenant: str,
        export_id: UUID,
        approved: bool,
        reviewer: str,
        reason: str,
    ) -> int:
        """Approve or reject a pending export (another person than its requester)."""
        export = self.get_export(tenant=tenant, export_id=export_id)
        export.approve(approved=approved, reviewer=reviewer, reason=reason)
        recordings = self.save(export)
        return recordings[-1].notification.id

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

    def last_position(self, export_id: UUID) -> int | None:
        """The log position of the export's latest event (what listings show)."""
        entries = self.event_log.entries_for(export_id)
        return entries[-1].position if entries else None

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
        if export.floor_digest:
            found.append(
                (
                    "platform-policy",
                    self._entry(
                        Policy.create_id(export.floor_digest), topic=".Published"
                    ),
                )
            )
        if export.review is not None:
            found.append(("review", self._entry(export.id, topic=".Reviewed")))
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
            floor_digest=export.floor_digest,
            floor_reasons=export.floor_reasons,
            policy_reasons=export.policy_reasons,
            limit=export.limit,
            pending_review=export.status == "pending_review",
        )
