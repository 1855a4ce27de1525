"""A tenant's slice of the log: written, read and checked without the service.

A slice holds some positions only, so its chain cannot be walked end to end.
Instead each record's own hash is recomputed; records at consecutive leaves
of the tree must link by prev_hash; each record's inclusion proof must lead
to the root of the one signed checkpoint in the header, whose signature is
checked with the keys the slice's own SigningKeyRing events record; and each
record must be the tenant's or public (as projections.tenancy decides), so a
record of another tenant slipped in is named, as is a hole in an aggregate.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, StoredEvent

from adapters.audit.auditor import FORMAT, check_chain, log_entry, log_record, read_log
from adapters.ledger.chain import GENESIS, row_hash
from adapters.ledger.checkpoints import CHECKPOINT_TYPE
from adapters.ledger.merkle import proof_from_hex, verify_inclusion
from adapters.ledger.transcoder import CanonicalJSONTranscoder
from adapters.signing.dsse import payload_of, verify_envelope
from domain.ledger.keys import SigningKeyRing
from projections.tenancy import BINDINGS, BOUND, PLATFORM, PUBLIC, audience

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from uuid import UUID

    from application.ports import LogEntry


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the checks of a log file (the whole log or a slice) found."""

    kind: str
    """"chain" for the whole log, "slice" for a tenant's slice."""
    checked: int
    failure: str | None
    tenant: str = ""
    size: int = 0

    @property
    def summary(self) -> str:
        if self.kind == "chain":
            return f"chain ok: {self.checked:,} events"
        return (
            f"slice ok: {self.checked:,} events of tenant {self.tenant}, each "
            f"proven against the signed checkpoint of {self.size:,} events"
        )


def write_slice(
    records: Iterable[tuple[LogEntry, Mapping[str, Any]]],
    out: TextIO,
    *,
    tenant: str,
    checkpoint: Mapping[str, Any],
) -> int:
    """A slice file: the header names the tenant and holds the checkpoint's
    envelope; each record carries its inclusion proof. Returns records written."""
    header = {"format": FORMAT, "slice": {"tenant": tenant}, "checkpoint": checkpoint}
    out.write(json.dumps(header) + "\n")
    written = 0
    for entry, proof in records:
        inclusion = {k: proof[k] for k in ("leafIndex", "treeSize", "proof")}
        line = {**log_record(entry), "inclusion": inclusion}
        out.write(json.dumps(line, sort_keys=True) + "\n")
        written += 1
    return written


def read_checked(lines: Iterable[str]) -> tuple[list[LogEntry], Verdict]:
    """The records of a log file and what checking them found.

    The whole log's chain is walked (adapters.audit.auditor.check_chain); a slice is
    checked as this module says. ValueError if it is not a log file at all.
    """
    iterator = iter(lines)
    first = next(iterator, "")
    try:
        header = json.loads(first or "{}")
    except ValueError:
        header = {}
    if not isinstance(header, dict) or "slice" not in header:
        records = list(read_log(itertools.chain([first], iterator)))
        return records, Verdict("chain", *check_chain(records))
    if header.get("format") != FORMAT:
        msg = f"not a Conductor log file (expected format {FORMAT})"
        raise ValueError(msg)
    records, proofs = _records(iterator)
    return records, check_slice(header, records, proofs)


def _records(lines: Iterator[str]) -> tuple[list[LogEntry], list[Any]]:
    records, proofs = [], []
    for number, line in enumerate(lines, start=2):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            records.append(log_entry(item))
        except (ValueError, KeyError, TypeError) as error:
            msg = f"line {number}: not a log record ({error})"
            raise ValueError(msg) from None
        proofs.append(item.get("inclusion"))
    return records, proofs


@dataclass(frozen=True, slots=True)
class _Head:
    size: int
    root: bytes
    last_position: int


def check_slice(
    header: Mapping[str, Any], records: list[LogEntry], proofs: list[Any]
) -> Verdict:
    """Check a slice's records, their proofs, their tenant and its checkpoint."""
    tenant = str((header.get("slice") or {}).get("tenant", ""))
    envelope = header.get("checkpoint")
    head = _head(envelope)
    if isinstance(head, str):
        return Verdict("slice", 0, head, tenant)
    fold = _Tenancy(tenant)
    previous: tuple[LogEntry, int] | None = None
    for checked, (entry, proof) in enumerate(zip(records, proofs, strict=True)):
        failure = _record_failure(entry, proof, previous, head) or fold.add(entry)
        if failure is not None:
            where = f"position {entry.position}: {failure}"
            return Verdict("slice", checked, where, tenant, head.size)
        previous = (entry, int(proof["leafIndex"]))
    failures = fold.unbound() + [
        f"checkpoint: {line}" for line in verify_envelope(envelope or {}, fold.keys)
    ]
    return Verdict(
        "slice", len(records), failures[0] if failures else None, tenant, head.size
    )


def _head(envelope: Any) -> _Head | str:
    """The checkpoint's signed tree head, or what is wrong with it."""
    if not isinstance(envelope, dict):
        return "checkpoint: the slice's header holds no signed checkpoint"
    if envelope.get("payloadType") != CHECKPOINT_TYPE:
        return f"checkpoint: payloadType is not {CHECKPOINT_TYPE}"
    try:
        payload = json.loads(payload_of(envelope))
        return _Head(
            int(payload["size"]),
            bytes.fromhex(payload["rootHash"]),
            int(payload["lastPosition"]),
        )
    except (ValueError, KeyError, TypeError):
        return "checkpoint: payload is not a tree head"


def _record_failure(
    entry: LogEntry, proof: Any, previous: tuple[LogEntry, int] | None, head: _Head
) -> str | None:
    """What is wrong with one record on its own and against the record before."""
    if previous is not None and entry.position <= previous[0].position:
        return f"out of order after {previous[0].position}"
    if entry.position > head.last_position:
        return f"after the checkpoint's last position {head.last_position}"
    if _hash(entry) != entry.hash:
        return "content does not match its hash"
    return _proof_failure(entry, proof, previous, head)


def _proof_failure(
    entry: LogEntry, proof: Any, previous: tuple[LogEntry, int] | None, head: _Head
) -> str | None:
    """The record's inclusion proof must lead to the checkpoint's root."""
    try:
        index, size = int(proof["leafIndex"]), int(proof["treeSize"])
        path = proof_from_hex(proof["proof"])
    except (KeyError, ValueError, TypeError):
        return "no well-formed inclusion proof"
    if size != head.size:
        return f"proved against a tree of {size}, the checkpoint has {head.size}"
    if previous is not None and index <= previous[1]:
        return f"leaf {index} is not after the previous record's leaf {previous[1]}"
    if not verify_inclusion(bytes.fromhex(entry.hash), index, size, path, head.root):
        return "not included in the signed checkpoint (its proof fails)"
    return _link_failure(entry, index, previous)


def _link_failure(
    entry: LogEntry, index: int, previous: tuple[LogEntry, int] | None
) -> str | None:
    """Neighbouring leaves must chain: prev_hash is the hash of the leaf before."""
    if index == 0 and entry.prev_hash != GENESIS:
        return "the log's first event does not start from the genesis hash"
    if previous is not None and index == previous[1] + 1:
        before = previous[0]
        if entry.prev_hash != before.hash:
            return (
                f"prev_hash does not match the event before it (position "
                f"{before.position}): an event is missing or changed"
            )
    return None


def _hash(entry: LogEntry) -> str:
    return row_hash(
        entry.position,
        str(entry.originator_id),
        entry.version,
        entry.topic,
        entry.state,
        entry.prev_hash,
    )


class _Tenancy:
    """Whose each record is, folded over the slice as the projection does."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.mapper: Mapper[UUID] = Mapper(transcoder=CanonicalJSONTranscoder())
        self.owners: dict[UUID, str] = {}
        self.versions: dict[UUID, int] = {}
        self.policies: dict[str, int] = {}
        self.bound: set[str] = set()
        self.keys: dict[str, str] = {}
        """Key id -> PEM, from the slice's own SigningKeyRing events."""

    def add(self, entry: LogEntry) -> str | None:
        """Why the record is not the tenant's (or public), else None."""
        try:
            event: Any = self.mapper.to_domain_event(
                StoredEvent(
                    entry.originator_id, entry.version, entry.topic, entry.state
                )
            )
        except Exception as error:  # any undecodable record is named, not raised
            return f"cannot be decoded ({type(error).__name__})"
        last = self.versions.get(entry.originator_id, 0)
        if entry.version != last + 1:
            return (
                f"aggregate {entry.originator_id} goes from version {last} to "
                f"{entry.version}: an event of it is missing"
            )
        self.versions[entry.originator_id] = entry.version
        return self._classify(event, entry.position)

    def _classify(self, event: Any, position: int) -> str | None:
        who = audience(event, self.owners)
        if who == BOUND:
            self.policies.setdefault(event.digest, position)
        elif who == PUBLIC:
            if isinstance(event, SigningKeyRing.KeyAdded):
                self.keys[event.key_id] = event.public_key_pem
        elif who == PLATFORM:
            return f"a platform event, not part of {self.tenant}'s slice"
        elif who != self.tenant:
            return f"belongs to tenant {who}, not to {self.tenant}'s slice"
        elif isinstance(event, Aggregate.Created):
            self.owners[event.originator_id] = who
        if who == self.tenant and isinstance(event, BINDINGS):
            self.bound.add(event.digest)
        return None

    def unbound(self) -> list[str]:
        """Policies in the slice that none of the tenant's bindings names."""
        return [
            f"position {position}: policy {digest[:12]} is not bound by "
            f"{self.tenant}, so not part of its slice"
            for digest, position in sorted(self.policies.items(), key=lambda x: x[1])
            if digest not in self.bound
        ]
