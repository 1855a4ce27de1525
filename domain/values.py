"""Value objects shared by the aggregates, and the field rules they obey."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple

from domain.errors import FieldViolation, ValidationError

if TYPE_CHECKING:
    from collections.abc import Iterable

CLASSIFICATIONS = frozenset(
    {
        "public",
        "pii.name",
        "pii.email",
        "pii.phone",
        "pii.address",
        "pii.dob",
        "id.national",
        "secret",
        "free_text",
    }
)
CONTRACT_STATUSES = frozenset({"draft", "active", "suspended", "expired"})
LOCATION_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson"})
INDEFINITE = "indefinite"

_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DURATION = re.compile(
    r"P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?"
)
# C0/C1 controls, DEL, lone surrogates and the line/paragraph separators.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\ufeff]")
_FORBIDDEN_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufeff]")

MAX_NAME = 128
MAX_TEXT = 4000
MAX_SHORT = 200
MAX_ITEMS = 64
MAX_COLUMNS = 2000


class Column(NamedTuple):
    """A column of a dataset and the classification that drives its DLP."""

    name: str
    classification: str


def is_iso_duration(value: str) -> bool:
    """Whether ``value`` is a non-zero ISO-8601 duration such as ``P1Y6M``."""
    match = _DURATION.fullmatch(value)
    return match is not None and any(int(g) for g in match.groups() if g)


class _Checker:
    """Collects violations so a caller sees every broken rule at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field: str, rule: str, message: str) -> None:
        self.violations.append(FieldViolation(field, rule, message))

    def text(
        self,
        field: str,
        value: str,
        max_len: int,
        *,
        required: bool = True,
        multiline: bool = False,
    ) -> bool:
        if not value.strip():
            if required:
                self.add(field, "required", "must not be empty")
                return False
            return True
        if len(value) > max_len:
            self.add(field, "max-length", f"must be at most {max_len} characters")
            return False
        forbidden = _FORBIDDEN_MULTILINE if multiline else _FORBIDDEN
        if forbidden.search(value):
            self.add(field, "no-control-characters", "contains control characters")
            return False
        return True

    def slug(self, field: str, value: str, max_len: int = 64) -> bool:
        if not self.text(field, value, max_len):
            return False
        if not _SLUG.fullmatch(value):
            self.add(
                field,
                "pattern",
                "must start with a letter or digit and use only letters, digits, "
                "'.', '_' and '-'",
            )
            return False
        return True

    def unique_slugs(
        self, field: str, values: Iterable[str], *, non_empty: bool
    ) -> None:
        items = list(values)
        if non_empty and not items:
            self.add(field, "non-empty", "must hold at least one item")
        if len(items) > MAX_ITEMS:
            self.add(field, "max-items", f"must hold at most {MAX_ITEMS} items")
            return
        seen: set[str] = set()
        for i, item in enumerate(items):
            if self.slug(f"{field}[{i}]", item) and item in seen:
                self.add(f"{field}[{i}]", "unique", f"{item!r} appears twice")
            seen.add(item)


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """What a client declares about a dataset (everything but identity/lineage)."""

    name: str
    license: str
    purposes: tuple[str, ...]
    retention: str
    region: str
    contract_version: str
    description: str = ""
    contract_status: str = "active"
    tags: tuple[str, ...] = ()
    owner: str = ""
    location: str = ""
    columns: tuple[Column, ...] = ()

    def as_fields(self) -> dict[str, Any]:
        """The spec as keyword arguments for the aggregate's events."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def validate(self, *, regions: frozenset[str]) -> None:
        """Raise ValidationError naming every field rule this spec breaks."""
        check = _Checker()
        check.slug("name", self.name, MAX_NAME)
        check.text(
            "description", self.description, MAX_TEXT, required=False, multiline=True
        )
        check.text("license", self.license, MAX_SHORT)
        check.unique_slugs("purposes", self.purposes, non_empty=True)
        if check.text("retention", self.retention, 64) and not (
            self.retention == INDEFINITE or is_iso_duration(self.retention)
        ):
            check.add(
                "retention",
                "iso8601-duration",
                "must be a non-zero ISO-8601 duration (e.g. P1Y, P90D) or 'indefinite'",
            )
        if check.text("region", self.region, 32) and self.region not in regions:
            check.add(
                "region",
                "allowed-region",
                f"must be one of {', '.join(sorted(regions))}",
            )
        check.text("contract_version", self.contract_version, 64)
        if self.contract_status not in CONTRACT_STATUSES:
            check.add(
                "contract_status",
                "allowed-value",
                f"must be one of {', '.join(sorted(CONTRACT_STATUSES))}",
            )
        check.unique_slugs("tags", self.tags, non_empty=False)
        check.text("owner", self.owner, MAX_SHORT, required=False)
        self._check_location(check)
        self._check_columns(check)
        if check.violations:
            raise ValidationError(check.violations)

    def _check_location(self, check: _Checker) -> None:
        if not self.location or not check.text("location", self.location, 1024):
            return
        path = PurePosixPath(self.location)
        if path.is_absolute() or "\\" in self.location or ".." in path.parts:
            check.add(
                "location",
                "relative-path",
                "must be a relative path inside the tenant's data root "
                "(no leading '/', no '..')",
            )
        elif path.suffix.lower() not in LOCATION_SUFFIXES:
            check.add(
                "location",
                "allowed-suffix",
                f"must end in one of {', '.join(sorted(LOCATION_SUFFIXES))}",
            )

    def _check_columns(self, check: _Checker) -> None:
        if len(self.columns) > MAX_COLUMNS:
            check.add("columns", "max-items", f"must hold at most {MAX_COLUMNS} items")
            return
        seen: set[str] = set()
        for i, column in enumerate(self.columns):
            field = f"columns[{i}]"
            if check.text(f"{field}.name", column.name, MAX_NAME):
                if column.name in seen:
                    check.add(
                        f"{field}.name", "unique", f"{column.name!r} appears twice"
                    )
                seen.add(column.name)
            if column.classification not in CLASSIFICATIONS:
                check.add(
                    f"{field}.classification",
                    "allowed-classification",
                    f"must be one of {', '.join(sorted(CLASSIFICATIONS))}",
                )
