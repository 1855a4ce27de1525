"""Running an allowed export: DLP -> Delivered -> signed proof -> ProofIssued.

Every step is an event on the Export; a refusal is a Failed event and no file
is left behind. The proof is signed only after the delivery is recorded, so
its authorizing events are all in the log (and under a signed checkpoint).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import rfc8785

from application.ports import TransformRefusedError
from domain.exports.export import PROOF_FILE, PROOF_TYPE

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from uuid import UUID

    from application.exports.exports import Exports
    from application.ports import (
        Checkpoints,
        Signer,
        SourceFiles,
        TenantSecrets,
        Transformer,
    )
    from domain.catalog.dataset import Dataset
    from domain.exports.export import Export


@dataclass
class ExportPipeline:
    """The ports an export run needs, and where finished exports go."""

    exports: Exports
    transformer: Transformer
    sources: SourceFiles
    secrets: TenantSecrets
    signer: Signer
    checkpoints: Checkpoints
    out_dir: Path

    def directory(self, export_id: UUID) -> Path:
        return self.out_dir / str(export_id)

    def run(self, export_id: UUID, progress: Callable[[int, int], None]) -> str:
        """Take an allowed export to proven (or failed); returns the final status."""
        export = self.exports.load_export(export_id)
        if export.status == "allowed":
            self._deliver(export, progress)
            export = self.exports.load_export(export_id)
        if export.status == "delivered":
            self._prove(export)
            export = self.exports.load_export(export_id)
        return export.status

    def _deliver(self, export: Export, progress: Callable[[int, int], None]) -> None:
        dataset: Dataset = self.exports.repository.get(
            export.dataset_id, version=export.dataset_version
        )
        target = self.directory(export.id)
        try:
            source = self.sources.resolve(export.tenant, dataset.location)
            target.mkdir(parents=True, exist_ok=True)
            name = PurePosixPath(dataset.location).name
            report = self.transformer.transform(
                source,
                target / name,
                columns={c.name: c.classification for c in dataset.columns},
                preset=export.preset,
                key=self.secrets.tokenization_key(export.tenant),
                context=f"{export.tenant}|{export.purpose}",
                progress=progress,
            )
        except TransformRefusedError as refusal:
            shutil.rmtree(target, ignore_errors=True)
            self.exports.record_failure(
                export.id, stage="dlp", reason=refusal.reason, detail=refusal.detail
            )
            return
        self.exports.record_delivery(
            export.id,
            file_name=name,
            content_sha256=report.sha256,
            size=report.bytes,
            rows=report.rows,
            transforms=report.transforms,
        )

    def _prove(self, export: Export) -> None:
        self.exports.record_signing_key(self.signer)
        events = self.exports.authorizing_events(export)
        checkpoint = self.checkpoints.covering(max(e["position"] for e in events))
        for entry in events:
            entry["inclusion"] = self.checkpoints.inclusion(
                entry["position"], checkpoint.size
            )
        manifest = proof_manifest(
            export, self.exports.dataset_in_force(export), events, checkpoint.envelope
        )
        payload = rfc8785.dumps(manifest)
        envelope = self.signer.sign(PROOF_TYPE, payload)
        path = self.directory(export.id) / PROOF_FILE
        partial = path.with_name(PROOF_FILE + ".partial")
        partial.write_bytes(rfc8785.dumps(envelope))
        partial.replace(path)  # a reader never sees half a proof
        self.exports.record_proof(
            export.id,
            manifest_sha256=hashlib.sha256(payload).hexdigest(),
            # The envelope's own key id: a rotation may land between two calls.
            key_id=envelope["signatures"][0]["keyid"],
            checkpoint_size=checkpoint.size,
        )


def proof_manifest(
    export: Export,
    dataset: Dataset,
    events: list[dict[str, Any]],
    checkpoint: dict[str, Any],
) -> dict[str, Any]:
    """The seed's manifest plus everything an auditor needs to re-check it."""
    return {
        "type": "conductor.export-proof/v1",
        "exportId": str(export.id),
        "tenant": export.tenant,
        "dlpPreset": export.preset,
        "license": dataset.license,
        "purposes": list(dataset.purposes),
        "purpose": export.purpose,
        "residency": {
            "datasetRegion": dataset.region,
            "destinationRegion": export.destination_region,
        },
        "hash": f"sha256-{export.content_sha256}",
        "dataset": f"{export.dataset_id}@{export.dataset_version}",
        "content": {
            "file": export.file_name,
            "sha256": export.content_sha256,
            "bytes": export.bytes,
            "rows": export.rows,
        },
        "decision": {
            "allow": export.allow,
            "reasons": list(export.reasons),
            "policyDigest": export.policy_digest,
            "platformPolicyDigest": export.floor_digest,
            "inputDigest": export.input_digest,
            "review": None
            if export.review is None
            else {
                "approved": export.review[0],
                "reviewer": export.review[1],
                "reason": export.review[2],
            },
        },
        "authorizingEvents": events,
        "checkpoint": checkpoint,
        "issuedAt": datetime.now(UTC).isoformat(timespec="seconds"),
    }
