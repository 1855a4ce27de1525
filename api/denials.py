"""The export gate's refusal as a problem, shared by REST and GraphQL.

REST answers it as a 403 ``export-denied`` problem+json; GraphQL carries the
same problem in the error's ``extensions`` (api.graphql.auth.coded).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.problems import Problem

if TYPE_CHECKING:
    from application.exports.exports import ExportDecision


def export_denied(decision: ExportDecision) -> Problem:
    """403 naming every reason, and which policy gave it."""
    return Problem(
        403,
        "the export policy denies this export: " + ", ".join(decision.reasons),
        kind="export-denied",
        title="Export denied by policy",
        exportId=str(decision.export_id),
        reasons=list(decision.reasons),
        deniedBy={
            "platform": list(decision.floor_reasons),
            "tenant": list(decision.policy_reasons),
        },
        policyDigest=decision.policy_digest,
        platformPolicyDigest=decision.floor_digest,
        inputDigest=decision.input_digest,
        limit=decision.limit or None,
        position=decision.position,
    )
