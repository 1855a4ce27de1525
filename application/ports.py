"""Ports: what the application needs from the outside, as Protocols and records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from datetime import datetime
    from pathlib import Path
    from uuid import UUID

    import numpy as np
    import numpy.typing as npt
    from eventsourcing.persistence import ApplicationRecorder, InfrastructureFactory


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One stored event with its place in the global hash chain."""

    position: int
    originator_id: UUID
    version: int
    topic: str
    state: bytes
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class LogHead:
    """The tip of the chain: last position, its hash and how many events."""

    position: int
    hash: str
    events: int


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A command's outcome kept under its Idempotency-Key, saved with its events.

    ``position`` is filled in by the recorder (the last event of the save).
    """

    tenant: str
    key: str
    fingerprint: str
    response: bytes
    position: int | None = None


class EventLog(Protocol):
    """The shared event log the applications and projections stand on."""

    @property
    def env(self) -> Mapping[str, str]:
        """The eventsourcing environment the log was opened with."""

    @property
    def factory(self) -> InfrastructureFactory:
        """The library's infrastructure factory for the log's database."""

    @property
    def recorder(self) -> ApplicationRecorder:
        """The chained application recorder."""

    def entries(self, *, after: int, limit: int) -> Sequence[LogEntry]:
        """Events with positions > after, in position order."""

    def entries_for(self, originator_id: UUID) -> Sequence[LogEntry]:
        """One aggregate's events, in version order."""

    def entries_for_many(self, originator_ids: Sequence[UUID]) -> Sequence[LogEntry]:
        """Several aggregates' events, by aggregate then version (one read)."""

    def head(self) -> LogHead:
        """The chain tip."""

    def find_idempotency(self, tenant: str, key: str) -> IdempotencyRecord | None:
        """The outcome recorded under an Idempotency-Key, if any (and not expired)."""

    def purge_idempotency(self) -> int:
        """Forget expired Idempotency-Keys; returns how many."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """A policy engine's answer: allow, and every reason it would not."""

    allow: bool
    reasons: tuple[str, ...]
    limit: str = ""
    """The evaluation limit the policy hit (then it denies), if any."""


LIMIT_REASON = "policy_evaluation_limit"
"""The deny reason of a policy stopped at a limit (fail closed)."""


class PolicyLimitExceededError(Exception):
    """A policy evaluation went past a limit (cpu_time, wall_clock, memory...)."""

    def __init__(self, limit: str, description: str = "") -> None:
        self.limit = limit
        self.description = description or limit
        super().__init__(f"the policy exceeded its {self.description}")


class PolicyBusyError(Exception):
    """Every policy worker this caller may use is busy: retry shortly."""

    def __init__(self, retry_after_s: float) -> None:
        self.retry_after_s = retry_after_s
        super().__init__("policy evaluation is busy for this tenant; retry")


class PolicyRefusedError(ValueError):
    """Modules that cannot be published; ``rule`` names the check they fail."""

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        super().__init__(message)


class PolicyEngine(Protocol):
    """Evaluates a published module set (by digest) against an input document."""

    @property
    def engine(self) -> str:
        """Engine name and version, recorded with every decision."""

    def check(
        self,
        sources: Sequence[tuple[str, str]],
        probes: Sequence[Mapping[str, Any]] = (),
        *,
        tenant: str = "",
    ) -> None:
        """Compile the modules and run them on ``probes`` under the limits.

        Raises PolicyRefusedError (rego-compile, decision-shape,
        nondeterministic-builtin, <limit>-limit...) naming the problem.
        """

    def evaluate(
        self,
        digest: str,
        sources: Sequence[tuple[str, str]],
        document: Mapping[str, Any],
        *,
        tenant: str = "",
    ) -> Verdict:
        """The decision for ``document`` (fail closed on anything undefined or
        on a limit: then ``reasons`` is ``(LIMIT_REASON,)`` and ``limit`` says
        which)."""


class Signer(Protocol):
    """Signs payloads into DSSE envelopes with the active key."""

    def sign(self, payload_type: str, payload: bytes) -> dict[str, Any]:
        """A DSSE envelope over ``payload``."""

    def active_key_id(self) -> str:
        """The key id new envelopes are signed with."""

    def public_keys(self) -> dict[str, str]:
        """key id -> PEM public key, for every key ever used."""


@dataclass(frozen=True, slots=True)
class TransformReport:
    """What the DLP step wrote: counts and the digest of the output file."""

    rows: int
    bytes: int
    sha256: str
    transforms: tuple[tuple[str, str, int], ...]
    """(column, action, count) triples."""


class TransformRefusedError(Exception):
    """The DLP step refused (fail closed); nothing is delivered."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class Transformer(Protocol):
    """Streams a dataset's records through a DLP preset into the export file."""

    def transform(
        self,
        source: Path,
        destination: Path,
        *,
        columns: Mapping[str, str],
        preset: str,
        key: bytes,
        context: str,
        progress: Callable[[int, int], None],
    ) -> TransformReport:
        """Write ``destination``; raise TransformRefusedError to fail closed."""


class SourceFiles(Protocol):
    """Where a tenant's dataset locations resolve to."""

    def resolve(self, tenant: str, location: str) -> Path:
        """The file, refusing (TransformRefusedError) paths outside the data root."""


class TenantSecrets(Protocol):
    """Per-tenant keys for deterministic tokens."""

    def tokenization_key(self, tenant: str) -> bytes:
        """At least 32 bytes, stable for the tenant, unrelated across tenants."""


class SignedCheckpoint(Protocol):
    @property
    def size(self) -> int: ...
    @property
    def root(self) -> str: ...
    @property
    def last_position(self) -> int: ...
    @property
    def envelope(self) -> dict[str, Any]: ...


class Checkpoints(Protocol):
    """Signed checkpoints of the log and inclusion proofs against them."""

    def covering(self, position: int) -> SignedCheckpoint:
        """A signed checkpoint whose tree includes ``position``."""

    def inclusion(self, position: int, size: int) -> dict[str, Any]:
        """{position, leafIndex, treeSize, proof} for the event at ``position``."""


# -- entity resolution ----------------------------------------------------------


class Embedder(Protocol):
    """Records (as columns of field values) -> L2-normalised float32 vectors.

    Values are used in memory only. The hashing embedder (adapters.er.embedder)
    is keyed per tenant; a sentence-transformer could implement this too.
    """

    @property
    def name(self) -> str:
        """Model name and version, recorded with what it embedded."""

    @property
    def dims(self) -> int: ...

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields it reads (others are ignored)."""

    def embed(
        self, tenant: str, columns: Mapping[str, Sequence[str]]
    ) -> npt.NDArray[np.float32]:
        """One row per record, the same order as the columns."""


class NearestNeighbours(Protocol):
    """Approximate k nearest neighbours of queries among a base set of vectors."""

    def search(
        self, base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32], k: int
    ) -> npt.NDArray[np.int64]:
        """(queries x min(k, len(base))) row numbers of ``base``, nearest first."""


class VectorStore(Protocol):
    """Stored vectors (record id -> index label, vector); never the values."""

    def upsert(
        self,
        tenant: str,
        entity_set: str,
        record_ids: Sequence[str],
        vectors: npt.NDArray[np.float32],
    ) -> npt.NDArray[np.int64]:
        """Store vectors; returns each record's index label (kept on update)."""

    def set_position(self, tenant: str, entity_set: str, position: int) -> None: ...
    def position(self, tenant: str, entity_set: str) -> int: ...
    def count(self, tenant: str, entity_set: str) -> int: ...

    def vectors(
        self, tenant: str, entity_set: str
    ) -> Iterator[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]]:
        """All stored (labels, vectors), in label order and in chunks."""

    def lookup(
        self, tenant: str, entity_set: str, record_id: str
    ) -> tuple[int, npt.NDArray[np.float32]] | None: ...

    def record_ids(
        self, tenant: str, entity_set: str, labels: Sequence[int]
    ) -> dict[int, str]: ...


class VectorIndex(Protocol):
    """The persisted ANN index of each (tenant, entity set)."""

    def add(
        self,
        tenant: str,
        entity_set: str,
        labels: npt.NDArray[np.int64],
        vectors: npt.NDArray[np.float32],
    ) -> None: ...

    def commit(self, tenant: str, entity_set: str, position: int) -> None:
        """Persist the index as reflecting the log up to ``position``."""

    def knn(
        self,
        tenant: str,
        entity_set: str,
        vectors: npt.NDArray[np.float32],
        k: int,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Labels and cosine similarities of the k nearest stored vectors."""

    def rebuild(
        self,
        tenant: str,
        entity_set: str,
        reason: str = "requested",
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Rebuild from the stored vectors; returns the index size. ``progress``
        (if given) is told (vectors added, vectors in all) after each chunk."""


class RecordFiles(Protocol):
    """Reads a tenant's record files (CSV with a header holding an id column)."""

    def count(self, path: Path, id_column: str) -> int:
        """Records in the file (ValueError when there is no such id column)."""

    def chunks(
        self, path: Path, id_column: str
    ) -> Iterator[tuple[list[str], dict[str, list[str]]]]:
        """(ids, field -> values) per chunk of records."""


class JobQueue(Protocol):
    """Embedding jobs waiting for their time, and who is running each.

    A run holds a lease on its job: ``claim`` takes it when nobody holds it or
    its holder's lease has expired (the holder crashed or hung), ``renew``
    extends it and says whether it is still the caller's. So one job runs in
    one place at a time across every process, and a lost run is taken over.
    """

    def enqueue(self, job_id: UUID, tenant: str, run_after: datetime) -> None: ...
    def due(self, now: datetime) -> list[UUID]: ...
    def claim(self, job_id: UUID, owner: str, now: datetime, until: datetime) -> bool:
        """Take the job's lease until ``until`` if it is free or expired at ``now``."""

    def renew(self, job_id: UUID, owner: str, until: datetime) -> bool:
        """Extend owner's lease; False when another owner took the job over."""

    def dequeue(self, job_id: UUID) -> None:
        """The job is over (completed or failed): never due again, lease dropped."""
