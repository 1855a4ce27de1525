"""The signing keys in the log: auditors take public keys from the log they verify."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.topics import keep_stored_topics


class SigningKeyRing(Aggregate):
    """Every public key Conductor has signed with (old proofs keep verifying)."""

    class Started(Aggregate.Created):
        pass

    class KeyAdded(Aggregate.Event):
        key_id: str
        public_key_pem: str
        created_at: str

    @staticmethod
    def create_id() -> UUID:
        return uuid5(NAMESPACE_URL, "/signing-keys")

    @event(Started)
    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def add(self, *, key_id: str, public_key_pem: str, created_at: str) -> bool:
        """Record a key once; False (no event) if it is already in the ring."""
        if key_id in self.keys:
            return False
        self._add(key_id=key_id, public_key_pem=public_key_pem, created_at=created_at)
        return True

    @event(KeyAdded)
    def _add(self, *, key_id: str, public_key_pem: str, created_at: str) -> None:
        del created_at
        self.keys[key_id] = public_key_pem


keep_stored_topics(__name__, stored_as="domain.keys")
