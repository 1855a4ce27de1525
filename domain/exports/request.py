"""An export request's own rules: the presets, its field checks, the policy input.

The input the policies saw is a pure function of the dataset state in force and
the request, so an auditor can rebuild it from the log alone (`export_input`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from domain.errors import FieldViolation, ValidationError

if TYPE_CHECKING:
    from domain.catalog.dataset import Dataset

PRESETS = ("tokenize_strict", "mask", "redact", "none")


def check_request(
    *, preset: str, purpose: str, destination_region: str, regions: frozenset[str]
) -> None:
    """Validate the request's own fields (the policy judges the rest)."""
    violations = []
    if preset not in PRESETS:
        violations.append(
            FieldViolation(
                "preset", "allowed-value", f"must be one of {', '.join(PRESETS)}"
            )
        )
    if not purpose.strip() or len(purpose) > 64:
        violations.append(FieldViolation("purpose", "required", "1-64 characters"))
    if destination_region not in regions:
        violations.append(
            FieldViolation(
                "destination_region",
                "allowed-region",
                f"must be one of {', '.join(sorted(regions))}",
            )
        )
    if violations:
        raise ValidationError(violations)


def export_input(
    dataset: Dataset,
    *,
    preset: str,
    purpose: str,
    destination_region: str,
    requester: str,
) -> dict[str, Any]:
    """What the export policy is asked about (JSON-ready, no floats)."""
    return {
        "dataset": {
            "id": str(dataset.id),
            "version": dataset.version,
            "name": dataset.name,
            "license": dataset.license,
            "purposes": list(dataset.purposes),
            "region": dataset.region,
            "retention": dataset.retention,
            "status": "retired" if dataset.retired else "active",
            "contract_status": dataset.contract_status,
            "contract_version": dataset.contract_version,
            "columns": {c.name: c.classification for c in dataset.columns},
        },
        "request": {
            "purpose": purpose,
            "preset": preset,
            "destination_region": destination_region,
            "requester": requester,
        },
    }
