"""What the SQLite and PostgreSQL catalog views share: row codec and query text."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from projections.catalog import CatalogQuery, CatalogRow

if TYPE_CHECKING:
    from collections.abc import Mapping

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_TERMS = 8
FACET_LIMIT = 50


def search_terms(q: str) -> list[str]:
    """Words of a free-text query (punctuation is never syntax), at most 8."""
    return [w.lower() for w in _WORD.findall(q)][:MAX_TERMS]


def unmatchable(query: CatalogQuery) -> bool:
    """Filters no stored value can equal (stored text never holds NUL)."""
    values = (query.license, query.purpose, query.region, query.tag)
    return any(v is not None and "\x00" in v for v in values)


def words(text: str) -> str:
    """Text as space-separated words, split exactly like search_terms splits."""
    return " ".join(_WORD.findall(text))


def row_params(row: CatalogRow) -> dict[str, Any]:
    return {
        "id": row.id.hex,
        "tenant": row.tenant,
        "name": row.name,
        "description": row.description,
        "license": row.license,
        "purposes": json.dumps(list(row.purposes)),
        "retention": row.retention,
        "region": row.region,
        "contract_version": row.contract_version,
        "contract_status": row.contract_status,
        "tags": json.dumps(list(row.tags)),
        "owner": row.owner,
        "location": row.location,
        "columns": json.dumps([list(c) for c in row.columns]),
        "upstream": json.dumps([u.hex for u in row.upstream]),
        "status": row.status,
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "position": row.position,
    }


def row_from(record: Mapping[str, Any]) -> CatalogRow:
    return CatalogRow(
        id=UUID(record["id"]),
        tenant=record["tenant"],
        name=record["name"],
        description=record["description"],
        license=record["license"],
        purposes=tuple(json.loads(record["purposes"])),
        retention=record["retention"],
        region=record["region"],
        contract_version=record["contract_version"],
        contract_status=record["contract_status"],
        tags=tuple(json.loads(record["tags"])),
        owner=record["owner"],
        location=record["location"],
        columns=tuple((c[0], c[1]) for c in json.loads(record["columns"])),
        upstream=tuple(UUID(u) for u in json.loads(record["upstream"])),
        status=record["status"],
        version=int(record["version"]),
        created_at=datetime.fromisoformat(record["created_at"]),
        updated_at=datetime.fromisoformat(record["updated_at"]),
        position=int(record["position"]),
    )


ROW_COLUMNS = (
    "id",
    "tenant",
    "name",
    "description",
    "license",
    "purposes",
    "retention",
    "region",
    "contract_version",
    "contract_status",
    "tags",
    "owner",
    "location",
    "columns",
    "upstream",
    "status",
    "version",
    "created_at",
    "updated_at",
    "position",
)


def search_text(row: CatalogRow) -> tuple[str, str, str, str]:
    """The four searchable fields: name, description, tags, column names."""
    return (
        row.name,
        row.description,
        " ".join(row.tags),
        " ".join(c[0] for c in row.columns),
    )
