"""Signed checkpoints of the log's Merkle tree (RFC 9162 style tree heads).

The tree's leaves are the chain hashes in position order, so the tree is a
pure function of ``event_chain`` and is rebuilt in memory on start; only the
signed checkpoints are stored. Proofs are by leaf index; positions map to
indexes through the (sorted) list of positions, since PostgreSQL sequences
can leave gaps.
"""

from __future__ import annotations

import bisect
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.ledger.merkle import MerkleLog, proof_to_hex
from adapters.signing.dsse import payload_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adapters.ledger.store import ChainedRecorder
    from application.ports import Signer

CHECKPOINT_TYPE = "application/vnd.conductor.checkpoint+json"
PAGE = 20_000


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: how many leaves, their root, up to which position."""

    size: int
    root: str
    last_position: int
    envelope: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(payload_of(self.envelope))  # type: ignore[no-any-return]

    @property
    def issued_at(self) -> datetime:
        return datetime.fromisoformat(self.payload["issuedAt"])


class LedgerCheckpoints:
    """The log's Merkle tree, its signed checkpoints and proofs against them."""

    def __init__(
        self, recorder: ChainedRecorder, signer: Signer, *, origin: str
    ) -> None:
        self.recorder = recorder
        self.signer = signer
        self.origin = origin
        self._tree = MerkleLog()
        self._positions: list[int] = []
        self._lock = threading.Lock()

    def sync(self) -> int:
        """Append chain rows not yet in the tree; returns the tree size."""
        with self._lock:
            while rows := self.recorder.chain_hashes(
                after=self._positions[-1] if self._positions else 0, limit=PAGE
            ):
                self._tree.extend(bytes.fromhex(h) for _, h in rows)
                self._positions.extend(p for p, _ in rows)
            return self._tree.size

    def latest(self) -> Checkpoint | None:
        stored = self.recorder.checkpoints()
        return _checkpoint(stored[-1]) if stored else None

    def at(self, size: int) -> Checkpoint | None:
        stored = self.recorder.checkpoints(at_least=size)
        return _checkpoint(stored[0]) if stored and stored[0][0] == size else None

    def sign(self) -> Checkpoint:
        """A checkpoint of the whole log as it is now (reusing one of that size)."""
        size = self.sync()
        latest = self.latest()
        if latest is not None and latest.size >= size:
            return latest
        with self._lock:
            root = self._tree.root(size).hex()
            last_position = self._positions[size - 1] if size else 0
        payload = {
            "origin": self.origin,
            "size": size,
            "rootHash": root,
            "lastPosition": last_position,
            "issuedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        envelope = self.signer.sign(CHECKPOINT_TYPE, _canonical(payload))
        self.recorder.save_checkpoint(
            size=size,
            last_position=last_position,
            root=root,
            envelope=json.dumps(envelope, sort_keys=True),
        )
        return self.at(size) or Checkpoint(size, root, last_position, envelope)

    def covering(self, position: int) -> Checkpoint:
        """The latest checkpoint if it includes ``position``, else a new one."""
        latest = self.latest()
        if latest is not None and latest.last_position >= position:
            return latest
        return self.sign()

    def inclusion(self, position: int, size: int) -> dict[str, Any]:
        """Proof that the event at ``position`` is leaf ``index`` of tree ``size``."""
        self.sync()
        with self._lock:
            index = bisect.bisect_left(self._positions, position)
            if index >= len(self._positions) or self._positions[index] != position:
                msg = f"no event at position {position}"
                raise LookupError(msg)
            if not 0 < size <= self._tree.size or index >= size:
                msg = f"position {position} is not in a tree of size {size}"
                raise LookupError(msg)
            proof = self._tree.inclusion_proof(index, size)
        return {
            "position": position,
            "leafIndex": index,
            "treeSize": size,
            "proof": proof_to_hex(proof),
        }

    def inclusions(self, positions: Sequence[int], size: int) -> list[dict[str, Any]]:
        """``inclusion`` for many positions against one tree (one sync, one lock)."""
        self.sync()
        with self._lock:
            if not 0 < size <= self._tree.size:
                msg = f"no tree of size {size}"
                raise LookupError(msg)
            proofs = []
            for position in positions:
                index = bisect.bisect_left(self._positions, position)
                if index >= size or self._positions[index] != position:
                    msg = f"position {position} is not in a tree of size {size}"
                    raise LookupError(msg)
                proofs.append(
                    {
                        "position": position,
                        "leafIndex": index,
                        "treeSize": size,
                        "proof": proof_to_hex(self._tree.inclusion_proof(index, size)),
                    }
                )
        return proofs

    def consistency(self, old_size: int, new_size: int) -> dict[str, Any]:
        """Proof that tree ``new_size`` extends tree ``old_size``."""
        size = self.sync()
        if not 0 < old_size <= new_size <= size:
            msg = f"sizes must satisfy 0 < from <= to <= {size}"
            raise LookupError(msg)
        with self._lock:
            proof = self._tree.consistency_proof(old_size, new_size)
            roots = self._tree.root(old_size).hex(), self._tree.root(new_size).hex()
        return {
            "from": old_size,
            "to": new_size,
            "fromRoot": roots[0],
            "toRoot": roots[1],
            "proof": proof_to_hex(proof),
        }


def _canonical(document: dict[str, Any]) -> bytes:
    # str/int values only: sorted compact JSON is RFC 8785 here.
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _checkpoint(row: tuple[int, int, str, str]) -> Checkpoint:
    size, last_position, root, envelope = row
    return Checkpoint(size, root, last_position, json.loads(envelope))
