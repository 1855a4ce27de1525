"""The Export aggregate: a governed export from request to signed proof.

Requested -> Decided (allowed or denied; recorded either way) -> Delivered ->
ProofIssued, or Failed when the DLP or the proof step refuses. While the
manual-review backout is on, a decision the platform floor allows waits as
pending_review until someone else in the tenant approves it (Reviewed) or
rejects it. The request's own rules and the policy input are in
``domain.exports.request``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, event

from domain.errors import ConflictError, DomainError, FieldViolation, ValidationError
from domain.exports.request import check_request
from domain.topics import keep_stored_topics

if TYPE_CHECKING:
    from collections.abc import Sequence

    from domain.catalog.dataset import Dataset

PROOF_TYPE = "application/vnd.conductor.export-proof+json"
PROOF_FILE = "proof.dsse.json"
"""Each finished export is a directory holding the exported file and this."""


class ExportStateError(ConflictError):
    """A step was taken out of order (e.g. a proof before delivery)."""

    def __init__(self, export_id: UUID, status: str, step: str) -> None:
        self.export_id = export_id
        super().__init__(f"export {export_id} is {status}: cannot {step}")


class SelfReviewError(DomainError):
    """Four eyes: whoever asked for an export may not review it."""

    def __init__(self, export_id: UUID, reviewer: str) -> None:
        self.export_id = export_id
        self.reviewer = reviewer
        super().__init__(
            f"{reviewer} requested export {export_id} and cannot also review it"
        )


class Export(Aggregate):
    """One export request and everything that happened to it."""

    class Requested(Aggregate.Created):
        tenant: str
        dataset_id: UUID
        dataset_version: int
        dataset_position: int
        preset: str
        purpose: str
        destination_region: str
        requester: str

    class Decided(Aggregate.Event):
        """``reasons`` are every policy's; the floor and tenant fields say whose.

        Decisions recorded before the platform floor existed lack the fields
        with defaults (the tenant's policy alone decided them).
        """

        allow: bool
        reasons: tuple[str, ...]
        policy_digest: str
        policy_position: int
        input_digest: str
        engine: str
        floor_digest: str = ""
        floor_position: int = 0
        floor_reasons: tuple[str, ...] = ()
        policy_reasons: tuple[str, ...] = ()
        limit: str = ""
        review: bool = False

    class Reviewed(Aggregate.Event):
        approved: bool
        reviewer: str
        reason: str

    class Delivered(Aggregate.Event):
        file_name: str
        content_sha256: str
        bytes: int
        rows: int
        transforms: tuple[tuple[str, str, int], ...]

    class Failed(Aggregate.Event):
        stage: str
        reason: str
        detail: str

    class ProofIssued(Aggregate.Event):
        manifest_sha256: str
        key_id: str
        checkpoint_size: int

    @staticmethod
    def create_id() -> UUID:
        return uuid4()

    @event(Requested)
    def __init__(
        self,
        *,
        tenant: str,
        dataset_id: UUID,
        dataset_version: int,
        dataset_position: int,
        preset: str,
        purpose: str,
        destination_region: str,
        requester: str,
    ) -> None:
        self.tenant = tenant
        self.dataset_id = UUID(str(dataset_id))
        self.dataset_version = dataset_version
        self.dataset_position = dataset_position
        self.preset = preset
        self.purpose = purpose
        self.destination_region = destination_region
        self.requester = requester
        self.status = "requested"
        self.allow = False
        self.gate_allow = False
        self.reasons: tuple[str, ...] = ()
        self.policy_digest = ""
        self.floor_digest = ""
        self.floor_reasons: tuple[str, ...] = ()
        self.policy_reasons: tuple[str, ...] = ()
        self.limit = ""
        self.review: tuple[bool, str, str] | None = None
        """(approved, reviewer, reason) once reviewed."""
        self.input_digest = ""
        self.file_name = ""
        self.content_sha256 = ""
        self.bytes = 0
        self.rows = 0
        self.failure = ""
        self.failure_detail = ""

    @classmethod
    def request(
        cls,
        *,
        tenant: str,
        dataset: Dataset,
        dataset_position: int,
        preset: str,
        purpose: str,
        destination_region: str,
        requester: str,
        regions: frozenset[str],
    ) -> Export:
        """Validate the request's own fields (the policy judges the rest)."""
        check_request(
            preset=preset,
            purpose=purpose,
            destination_region=destination_region,
            regions=regions,
        )
        return cls(
            tenant=tenant,
            dataset_id=dataset.id,
            dataset_version=dataset.version,
            dataset_position=dataset_position,
            preset=preset,
            purpose=purpose,
            destination_region=destination_region,
            requester=requester,
        )

    def decide(
        self,
        *,
        allow: bool,
        reasons: Sequence[str],
        policy_digest: str,
        policy_position: int,
        input_digest: str,
        engine: str,
        floor_digest: str = "",
        floor_position: int = 0,
        floor_reasons: Sequence[str] = (),
        policy_reasons: Sequence[str] = (),
        limit: str = "",
        review: bool = False,
    ) -> None:
        """Record the policies' verdict (exactly once); ``review`` holds an
        allowed or tenant-denied export for a person, never a floor denial."""
        self._require("requested", "record a decision")
        if review and floor_reasons:
            review = False  # the platform floor's denials are never reviewable
        self._decide(
            allow=allow,
            reasons=tuple(reasons),
            policy_digest=policy_digest,
            policy_position=policy_position,
            input_digest=input_digest,
            engine=engine,
            floor_digest=floor_digest,
            floor_position=floor_position,
            floor_reasons=tuple(floor_reasons),
            policy_reasons=tuple(policy_reasons),
            limit=limit,
            review=review,
        )

    @event(Decided)
    def _decide(
        self,
        *,
        allow: bool,
        reasons: tuple[str, ...],
        policy_digest: str,
        policy_position: int,
        input_digest: str,
        engine: str,
        floor_digest: str = "",
        floor_position: int = 0,
        floor_reasons: tuple[str, ...] = (),
        policy_reasons: tuple[str, ...] = (),
        limit: str = "",
        review: bool = False,
    ) -> None:
        del policy_position, engine, floor_position
        self.gate_allow = allow
        """What the policies said (``allow`` becomes a reviewer's answer)."""
        self.allow = allow and not review
        self.reasons = tuple(reasons)
        self.policy_digest = policy_digest
        self.floor_digest = floor_digest
        self.floor_reasons = tuple(floor_reasons)
        self.policy_reasons = tuple(policy_reasons)
        self.limit = limit
        self.input_digest = input_digest
        if review:
            self.status = "pending_review"
        else:
            self.status = "allowed" if allow else "denied"

    def approve(self, *, approved: bool, reviewer: str, reason: str) -> None:
        """A person's answer to a pending review (never the requester's own)."""
        self._require("pending_review", "review")
        if reviewer == self.requester:
            raise SelfReviewError(self.id, reviewer)
        if not reason.strip() or len(reason) > 500:
            raise ValidationError(
                [FieldViolation("reason", "required", "1-500 characters")]
            )
        self._review(approved=approved, reviewer=reviewer, reason=reason)

    @event(Reviewed)
    def _review(self, *, approved: bool, reviewer: str, reason: str) -> None:
        self.review = (approved, reviewer, reason)
        self.allow = approved
        self.status = "allowed" if approved else "rejected"

    def deliver(
        self,
        *,
        file_name: str,
        content_sha256: str,
        size: int,
        rows: int,
        transforms: Sequence[tuple[str, str, int]],
    ) -> None:
        """The transformed file is written; its digest is now fixed."""
        self._require("allowed", "deliver")
        self._deliver(
            file_name=file_name,
            content_sha256=content_sha256,
            bytes=size,
            rows=rows,
            transforms=tuple(transforms),
        )

    @event(Delivered)
    def _deliver(
        self,
        *,
        file_name: str,
        content_sha256: str,
        bytes: int,  # noqa: A002
        rows: int,
        transforms: tuple[tuple[str, str, int], ...],
    ) -> None:
        del transforms
        self.file_name = file_name
        self.content_sha256 = content_sha256
        self.bytes = bytes
        self.rows = rows
        self.status = "delivered"

    def fail(self, *, stage: str, reason: str, detail: str = "") -> None:
        """The DLP or the proof step refused; nothing leaves the platform."""
        if self.status not in {"allowed", "delivered"}:
            raise ExportStateError(self.id, self.status, "fail")
        self._fail(stage=stage, reason=reason, detail=detail[:500])

    @event(Failed)
    def _fail(self, *, stage: str, reason: str, detail: str) -> None:
        self.failure = f"{stage}:{reason}"
        self.failure_detail = detail
        self.status = "failed"

    def issue_proof(
        self, *, manifest_sha256: str, key_id: str, checkpoint_size: int
    ) -> None:
        """The signed proof bundle exists; the export is complete."""
        self._require("delivered", "issue a proof")
        self._issue(
            manifest_sha256=manifest_sha256,
            key_id=key_id,
            checkpoint_size=checkpoint_size,
        )

    @event(ProofIssued)
    def _issue(
        self, *, manifest_sha256: str, key_id: str, checkpoint_size: int
    ) -> None:
        del manifest_sha256, key_id, checkpoint_size
        self.status = "proven"

    def _require(self, status: str, step: str) -> None:
        if self.status != status:
            raise ExportStateError(self.id, self.status, step)


keep_stored_topics(__name__, stored_as="domain.export")
