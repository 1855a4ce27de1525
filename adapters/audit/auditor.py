"""The auditor's tools: export the log, check it, and replay export decisions.

Everything here works from a log file alone: the chain is recomputed, the
dataset state in force is rebuilt from its events, the policy source is taken
from its Published event (and its digest recomputed), the input and its
digest are rebuilt, and the decision is evaluated again and compared.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from adapters.ledger.chain import GENESIS, row_hash
from adapters.ledger.transcoder import CanonicalJSONTranscoder
from application.exports.gate import input_digest, same_outcome
from application.ports import LogEntry, Verdict
from domain.exports.export import Export
from domain.exports.policy import Policy, policy_digest
from domain.exports.request import export_input
from domain.ledger.keys import SigningKeyRing

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from application.ports import PolicyEngine

FORMAT = "conductor-log/v1"
_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False
).encode


def write_log(entries: Iterable[LogEntry], out: TextIO) -> int:
    """JSON Lines: a header, then one event per line; returns the events written."""
    out.write(json.dumps({"format": FORMAT}) + "\n")
    written = 0
    for e in entries:
        # ASCII escapes: no U+2028, U+0085 or other line breaks that some
        # readers split on inside a record (states are re-encoded on reading).
        out.write(json.dumps(log_record(e), sort_keys=True) + "\n")
        written += 1
    return written


def log_record(e: LogEntry) -> dict[str, Any]:
    """One event as a log file's record (and as GET /v1/log's entry)."""
    return {
        "position": e.position,
        "originatorId": str(e.originator_id),
        "version": e.version,
        "topic": e.topic,
        "state": json.loads(e.state),
        "prevHash": e.prev_hash,
        "hash": e.hash,
    }


def log_entry(item: dict[str, Any]) -> LogEntry:
    """A log file's record (or an API entry) as an event, its state canonical."""
    return LogEntry(
        position=int(item["position"]),
        originator_id=UUID(item["originatorId"]),
        version=int(item["version"]),
        topic=str(item["topic"]),
        state=_encode(item["state"]).encode(),
        prev_hash=str(item["prevHash"]),
        hash=str(item["hash"]),
    )


def read_log(lines: Iterable[str]) -> Iterator[LogEntry]:
    """Records from a log file (the stored state bytes are re-encoded canonically)."""
    iterator = iter(lines)
    header = json.loads(next(iterator, "{}") or "{}")
    if header.get("format") != FORMAT:
        msg = f"not a Conductor log file (expected format {FORMAT})"
        raise ValueError(msg)
    for number, line in enumerate(iterator, start=2):
        if not line.strip():
            continue
        try:
            yield log_entry(json.loads(line))
        except (ValueError, KeyError, TypeError) as error:
            msg = f"line {number}: not a log record ({error})"
            raise ValueError(msg) from None


def check_chain(records: Iterable[LogEntry]) -> tuple[int, str | None]:
    """(records checked, first failure or None) over the whole file."""
    prev, last, checked = GENESIS, 0, 0
    for r in records:
        if r.position <= last:
            return checked, f"position {r.position}: out of order after {last}"
        if r.prev_hash != prev:
            return (
                checked,
                f"position {r.position}: prev_hash does not match the previous "
                "event (an event is missing or changed)",
            )
        if (
            row_hash(
                r.position,
                str(r.originator_id),
                r.version,
                r.topic,
                r.state,
                r.prev_hash,
            )
            != r.hash
        ):
            return checked, f"position {r.position}: content does not match its hash"
        prev, last, checked = r.hash, r.position, checked + 1
    return checked, None


@dataclass(frozen=True, slots=True)
class Reconstruction:
    """One export decision rebuilt from the log, and whether it matches."""

    export_id: UUID
    dataset: str
    policy_digest: str
    input: dict[str, Any]
    input_digest: str
    allow: bool
    reasons: tuple[str, ...]
    mismatches: tuple[str, ...]

    @property
    def matches(self) -> bool:
        return not self.mismatches


class Replayer:
    """Aggregates rebuilt from log records, and export decisions re-evaluated."""

    def __init__(self, records: Iterable[LogEntry], engine: PolicyEngine) -> None:
        self.engine = engine
        self._mapper: Mapper[UUID] = Mapper(transcoder=CanonicalJSONTranscoder())
        self._streams: dict[UUID, list[LogEntry]] = defaultdict(list)
        for r in records:
            self._streams[r.originator_id].append(r)

    def aggregate(self, aggregate_id: UUID, version: int | None = None) -> Any:
        """The aggregate as of ``version`` (or its last event), from its records."""
        state: Any = None
        for r in sorted(self._streams.get(aggregate_id, ()), key=lambda x: x.version):
            if version is not None and r.version > version:
                break
            stored = StoredEvent(r.originator_id, r.version, r.topic, r.state)
            event: Any = self._mapper.to_domain_event(stored)
            state = event.mutate(state)
        return state

    def public_keys(self) -> dict[str, str]:
        """Every signing key the log records (key id -> PEM)."""
        ring = self.aggregate(SigningKeyRing.create_id())
        return dict(ring.keys) if isinstance(ring, SigningKeyRing) else {}

    def export_ids(self) -> list[UUID]:
        return [
            i
            for i, s in self._streams.items()
            if s[0].topic.endswith("Export.Requested")
        ]

    def replay(self, export_id: UUID) -> Reconstruction:
        """Rebuild the input, re-run the floor and the tenant's policy, compare."""
        export = self.aggregate(export_id)
        if not isinstance(export, Export):
            msg = f"no export {export_id} in the log"
            raise LookupError(msg)  # noqa: TRY004 - absent from the log, not a type slip
        dataset = self.aggregate(export.dataset_id, export.dataset_version)
        if dataset is None:
            return Reconstruction(
                export_id=export_id,
                dataset=str(export.dataset_id),
                policy_digest=export.policy_digest,
                input={},
                input_digest="",
                allow=False,
                reasons=(),
                mismatches=("the dataset's events are missing",),
            )
        document = export_input(
            dataset,
            preset=export.preset,
            purpose=export.purpose,
            destination_region=export.destination_region,
            requester=export.requester,
        )
        digest = input_digest(document)
        mismatches = (
            []
            if digest == export.input_digest
            else [f"input digest {digest} != recorded {export.input_digest}"]
        )
        verdicts = self._verdicts(export, document, mismatches)
        allow = all(v.allow for v in verdicts)
        reasons = tuple(sorted({r for v in verdicts for r in v.reasons}))
        if allow != export.gate_allow and not any(v.limit for v in verdicts):
            mismatches.append(
                f"decision {'allow' if allow else 'deny'} != recorded "
                f"{'allow' if export.gate_allow else 'deny'}"
            )
        mismatches += _review_gaps(export)
        return Reconstruction(
            export_id,
            f"{export.dataset_id}@{export.dataset_version}",
            export.policy_digest,
            document,
            digest,
            allow,
            reasons,
            tuple(mismatches),
        )

    def _verdicts(
        self, export: Export, document: dict[str, Any], mismatches: list[str]
    ) -> list[Verdict]:
        """Each policy that decided (the floor, if recorded, then the tenant's),
        re-run from its Published event and compared with what was recorded."""
        floor = export.floor_digest
        tenant_reasons = export.policy_reasons if floor else export.reasons
        recorded = [(export.policy_digest, tenant_reasons, "policy")]
        if export.floor_digest:
            recorded.insert(0, (export.floor_digest, export.floor_reasons, "floor"))
        verdicts = []
        for policy_id, reasons, role in recorded:
            policy = self.aggregate(Policy.create_id(policy_id))
            if not isinstance(policy, Policy):
                mismatches.append(f"{role} {policy_id} is not in the log")
                verdicts.append(Verdict(allow=False, reasons=()))
                continue
            if policy_digest(policy.sources) != policy_id:
                mismatches.append(f"the {role}'s sources do not hash to its digest")
            verdict = self.engine.evaluate(
                policy_id, policy.sources, document, tenant=export.tenant
            )
            limit = export.limit if role == "policy" else ""
            was = Verdict(allow=verdict.allow, reasons=tuple(reasons), limit=limit)
            if not same_outcome(was, verdict):
                mismatches.append(
                    f"{role} {'allow' if verdict.allow else 'deny'} "
                    f"{list(verdict.reasons)} != recorded {list(reasons)}"
                )
            verdicts.append(verdict)
        return verdicts


def _review_gaps(export: Export) -> list[str]:
    """Nothing the floor denied left; a denial left only once approved."""
    if export.status not in {"delivered", "proven"}:
        return []
    if export.floor_reasons:
        return ["delivered although the platform floor denied it"]
    if not export.gate_allow and not (export.review and export.review[0]):
        return ["delivered although denied and never approved"]
    return []
