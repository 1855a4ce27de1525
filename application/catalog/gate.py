"""The CI gate's rules: each dataset a repository uses must be registered,
active and under an active contract (of the version it pins, if it pins one).

The sources (manifests, dbt sources, OpenLineage events) are parsed by
adapters; the registry answers come from a running Conductor or an exported
log. The same uses and the same registry give the same findings, in the same
order, with the same digest.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from eventsourcing.persistence import IntegrityError

from application.base import CommandResult, LedgerApplication
from domain.catalog.gate import CatalogGateRan

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from uuid import UUID

RULES = ("unregistered", "retired", "no-active-contract", "contract-version")


@dataclass(frozen=True, slots=True)
class DatasetUse:
    """A dataset named by a file of the repository, where it is named."""

    name: str
    file: str
    line: int
    source: str
    """manifest | dbt | openlineage"""
    contract_version: str | None = None


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    """What the registry holds for a dataset name (None when it holds nothing)."""

    dataset_id: UUID
    status: str
    contract_version: str
    contract_status: str


class Registry(Protocol):
    """Answers the gate's one question for the token's tenant."""

    def lookup(self, names: Sequence[str]) -> dict[str, RegistryEntry | None]:
        """Each name's entry, or None when no dataset has that name."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One use of a dataset the gate refuses, and why."""

    name: str
    file: str
    line: int
    rule: str
    message: str

    def to_json(self) -> dict[str, object]:
        return {
            "dataset": self.name,
            "file": self.file,
            "line": self.line,
            "rule": self.rule,
            "message": self.message,
        }


def _finding(use: DatasetUse, entry: RegistryEntry | None) -> Finding | None:
    def refuse(rule: str, message: str) -> Finding:
        return Finding(use.name, use.file, use.line, rule, message)

    if entry is None:
        return refuse("unregistered", f"dataset {use.name!r} is not registered")
    if entry.status != "active":
        return refuse("retired", f"dataset {use.name!r} is retired")
    if entry.contract_status != "active" or not entry.contract_version:
        return refuse(
            "no-active-contract",
            f"dataset {use.name!r} has no active contract "
            f"(contract {entry.contract_version or '-'} is {entry.contract_status})",
        )
    if use.contract_version is not None and use.contract_version != (
        entry.contract_version
    ):
        return refuse(
            "contract-version",
            f"dataset {use.name!r} pins contract {use.contract_version} but the "
            f"registry's active contract is {entry.contract_version}",
        )
    return None


def check(uses: Iterable[DatasetUse], registry: Registry) -> list[Finding]:
    """The findings for every use, ordered by file, line and name."""
    ordered = sorted(uses, key=lambda u: (u.file, u.line, u.name))
    entries = registry.lookup(sorted({u.name for u in ordered}))
    found = (_finding(u, entries.get(u.name)) for u in ordered)
    return [f for f in found if f is not None]


def findings_digest(findings: Sequence[Finding]) -> str:
    """sha256 over the canonical JSON of the findings (order included)."""
    body = json.dumps(
        [f.to_json() for f in findings], sort_keys=True, separators=(",", ":")
    )
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


class GateRuns(LedgerApplication):
    """Recorded gate runs (CatalogGateRan): catalog conformance in the log."""

    def record_gate_run(
        self,
        *,
        tenant: str,
        repo: str,
        commit: str,
        findings_digest: str,
        findings: int,
        datasets: Sequence[str],
        failing: Sequence[str],
    ) -> CommandResult:
        """Append the run; the same repo, commit and digest again is a no-op."""
        run = CatalogGateRan.record(
            tenant=tenant,
            repo=repo,
            commit=commit,
            findings_digest=findings_digest,
            findings=findings,
            datasets=tuple(datasets),
            failing=tuple(failing),
        )
        try:
            return self._commit(
                tenant, None, CommandResult(run.id, 1, None, created=True), run
            )
        except IntegrityError:
            existing = self._load(run.id)
            if not isinstance(existing, CatalogGateRan):
                raise
            return CommandResult(run.id, existing.version, None)

    def get_gate_run(self, *, tenant: str, run_id: UUID) -> CatalogGateRan | None:
        """The run, if it exists and is the tenant's."""
        run = self._load(run_id)
        if isinstance(run, CatalogGateRan) and run.tenant == tenant:
            return run
        return None
