"""The registry the CI gate asks: a running Conductor, or an exported log.

Both answer from the same facts (the Dataset aggregate's events), so the same
repository gives the same findings online and offline.
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import Mapper, StoredEvent

from adapters.ledger.transcoder import CanonicalJSONTranscoder
from application.catalog.gate import RegistryEntry
from domain.catalog.dataset import Dataset

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from uuid import UUID

    import httpx

    from application.ports import LogEntry


def token_tenant(token: str) -> str:
    """The tenant claim of a bearer token (read, not verified: the server
    verifies it and answers only for that tenant, so a forged claim only
    finds nothing)."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims: Any = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError) as error:
        msg = f"CONDUCTOR_TOKEN is not a JWT ({error})"
        raise ValueError(msg) from None
    tenant = claims.get("tenant") if isinstance(claims, dict) else None
    if not isinstance(tenant, str) or not tenant:
        msg = "CONDUCTOR_TOKEN has no tenant claim"
        raise ValueError(msg)
    return tenant


class HttpRegistry:
    """GET /v1/datasets/{id} for each name (the id is the natural key's)."""

    def __init__(self, client: httpx.Client, tenant: str) -> None:
        self.client = client
        self.tenant = tenant

    def lookup(self, names: Sequence[str]) -> dict[str, RegistryEntry | None]:
        found: dict[str, RegistryEntry | None] = {}
        for name in names:
            dataset_id = Dataset.create_id(self.tenant, name)
            response = self.client.get(f"/v1/datasets/{dataset_id}")
            if response.status_code == 404:
                found[name] = None
                continue
            response.raise_for_status()
            body = response.json()
            found[name] = RegistryEntry(
                dataset_id=dataset_id,
                status=str(body["status"]),
                contract_version=str(body.get("contractVersion") or ""),
                contract_status=str(body.get("contractStatus") or ""),
            )
        return found


class LogRegistry:
    """Datasets rebuilt from an exported log's (chain-checked) records."""

    def __init__(self, records: Iterable[LogEntry], tenant: str) -> None:
        self.tenant = tenant
        self._mapper: Mapper[UUID] = Mapper(transcoder=CanonicalJSONTranscoder())
        self._streams: dict[UUID, list[LogEntry]] = {}
        for r in records:
            self._streams.setdefault(r.originator_id, []).append(r)

    def _dataset(self, dataset_id: UUID) -> Dataset | None:
        state: Any = None
        for r in sorted(self._streams.get(dataset_id, ()), key=lambda x: x.version):
            stored = StoredEvent(r.originator_id, r.version, r.topic, r.state)
            event: Any = self._mapper.to_domain_event(stored)
            state = event.mutate(state)
        if isinstance(state, Dataset) and state.tenant == self.tenant:
            return state
        return None

    def lookup(self, names: Sequence[str]) -> dict[str, RegistryEntry | None]:
        found: dict[str, RegistryEntry | None] = {}
        for name in names:
            dataset = self._dataset(Dataset.create_id(self.tenant, name))
            found[name] = (
                None
                if dataset is None
                else RegistryEntry(
                    dataset_id=dataset.id,
                    status="retired" if dataset.retired else "active",
                    contract_version=dataset.contract_version,
                    contract_status=dataset.contract_status,
                )
            )
        return found
