"""An export decision's reasons in words, beside the code the policy gave.

The codes are the platform floor's (application/exports/policies/platform.rego)
and the gate's limit reason; a tenant's own policy may give any code, which
the page shows as that policy's reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from application.ports import LIMIT_REASON

WORDS = {
    "license_embargoed": (
        "The dataset's license is Embargoed: the platform never lets an embargoed "
        "dataset leave, whatever the preset or purpose."
    ),
    "purpose_not_permitted": (
        "The purpose you declared is not one of the purposes the dataset allows."
    ),
    "dlp_preset_none": (
        "The preset 'none' would export raw values: the platform always denies it."
    ),
    "residency_violation": (
        "The destination region is not one the dataset's region may be exported "
        "to (residency: US to US, EU to EU, UK to UK or EU)."
    ),
    "dataset_retired": "The dataset is retired: retired datasets are not exported.",
    "contract_not_active": "The dataset's data contract is not active.",
    "missing_input": "The policy was not given the dataset or the request.",
    LIMIT_REASON: (
        "The tenant's policy ran past its time or memory limit and was stopped: "
        "a policy that cannot answer denies."
    ),
}


@dataclass(frozen=True)
class Reason:
    code: str
    words: str
    source: str
    """platform (the floor every export passes) or tenant (its own policy)."""


def explain(code: str, source: str) -> Reason:
    """The reason in words (a tenant's own code is named as its policy's)."""
    if code in WORDS:
        return Reason(code, WORDS[code], source)
    if code.startswith("missing_field:"):
        name = code.partition(":")[2]
        return Reason(code, f"The policy input has no field {name}.", source)
    return Reason(code, "Your tenant's export policy gives this reason.", source)


def reasons_of(
    reasons: tuple[str, ...],
    floor_reasons: tuple[str, ...],
    policy_reasons: tuple[str, ...],
) -> list[Reason]:
    """Every reason of a denial, each with the policy that gave it."""
    if not floor_reasons and not policy_reasons:
        return [explain(code, "policy") for code in reasons]
    out = [explain(code, "platform") for code in floor_reasons]
    out += [explain(code, "tenant") for code in policy_reasons]
    return out
