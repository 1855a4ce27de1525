"""A CI gate run: which datasets a repository uses and what the gate found."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.errors import FieldViolation, ValidationError

MAX_DATASETS = 10_000
_TEXT_LIMIT = 256


class CatalogGateRan(Aggregate):
    """One recorded `conductor catalog gate --record` run (never amended)."""

    class Ran(Aggregate.Created):
        tenant: str
        repo: str
        commit: str
        findings_digest: str
        findings: int
        datasets: tuple[str, ...]
        failing: tuple[str, ...]

    @staticmethod
    def create_id(tenant: str, repo: str, commit: str, findings_digest: str) -> UUID:
        """Natural key: the same repository, commit and findings record once."""
        key = f"/tenants/{tenant}/gate-runs/{repo}/{commit}/{findings_digest}"
        return uuid5(NAMESPACE_URL, key)

    @classmethod
    def record(
        cls,
        *,
        tenant: str,
        repo: str,
        commit: str,
        findings_digest: str,
        findings: int,
        datasets: tuple[str, ...],
        failing: tuple[str, ...],
    ) -> CatalogGateRan:
        """Validate a run's summary, then record it."""
        problems = []
        for name, value in (("repo", repo), ("commit", commit)):
            if not value or len(value) > _TEXT_LIMIT:
                problems.append(FieldViolation(name, "length", "1-256 characters"))
        digest = findings_digest.removeprefix("sha256:")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            problems.append(
                FieldViolation("findingsDigest", "sha256", "64 lowercase hex digits")
            )
        if findings < 0:
            problems.append(FieldViolation("findings", "minimum", "must be >= 0"))
        if len(datasets) > MAX_DATASETS:
            problems.append(FieldViolation("datasets", "maxItems", "at most 10000"))
        if any(not d or len(d) > _TEXT_LIMIT for d in (*datasets, *failing)):
            problems.append(FieldViolation("datasets", "length", "names 1-256 chars"))
        if not set(failing) <= set(datasets):
            problems.append(
                FieldViolation("failing", "subset", "every failing name is a dataset")
            )
        if problems:
            raise ValidationError(problems)
        run: CatalogGateRan = cls(
            tenant=tenant,
            repo=repo,
            commit=commit,
            findings_digest=f"sha256:{digest}",
            findings=findings,
            datasets=tuple(sorted(set(datasets))),
            failing=tuple(sorted(set(failing))),
        )
        return run

    @event(Ran)
    def __init__(
        self,
        *,
        tenant: str,
        repo: str,
        commit: str,
        findings_digest: str,
        findings: int,
        datasets: tuple[str, ...],
        failing: tuple[str, ...],
    ) -> None:
        self.tenant = tenant
        self.repo = repo
        self.commit = commit
        self.findings_digest = findings_digest
        self.findings = findings
        self.datasets = tuple(datasets)
        self.failing = tuple(failing)
