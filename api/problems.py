"""RFC 9457 problem+json for every error, mapped from domain and HTTP errors."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from litestar.exceptions import (
    HTTPException,
    SerializationException,
    ValidationException,
)
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)

from adapters.dr.router import (
    ReadOnlyReplicaError,
    RegionError,
    RegionUnavailableError,
    StaleEpochError,
)
from application.ports import PolicyBusyError
from domain.errors import (
    ConflictError,
    DatasetNameTakenError,
    DatasetRetiredError,
    DomainError,
    IdempotencyKeyReusedError,
    LineageCycleError,
    NotFoundError,
    ValidationError,
    VersionMismatchError,
)
from domain.exports.export import SelfReviewError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

TITLES = {
    400: ("bad-request", "The request is malformed"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Missing permission"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflicts with the current state"),
    412: ("precondition-failed", "The resource changed since you read it"),
    413: ("payload-too-large", "The request body is too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation", "The request breaks a rule"),
    428: ("precondition-required", "This request must be conditional"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Temporarily unavailable"),
}


class Problem(ProblemDetailsException):
    """A problem with a stable type URI and title for its kind."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        default_kind, default_title = TITLES.get(status, ("error", "Error"))
        super().__init__(
            detail=detail,
            status_code=status,
            type_=f"/problems/{kind or default_kind}",
            title=title or default_title,
            headers=headers,
            extra=extra or None,
        )


def camel(path: str) -> str:
    """``columns[2].contract_version`` -> ``columns[2].contractVersion``."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)


def field_errors(violations: Sequence[Any]) -> list[dict[str, str]]:
    return [
        {"field": camel(v.field), "rule": v.rule, "message": v.message}
        for v in violations
    ]


def _domain(error: DomainError) -> ProblemDetailsException:  # noqa: PLR0911
    if isinstance(error, ValidationError):
        return Problem(422, str(error), errors=field_errors(error.violations))
    if isinstance(error, NotFoundError):
        return Problem(404, str(error))
    if isinstance(error, VersionMismatchError):
        return Problem(412, str(error), currentVersion=error.actual)
    if isinstance(error, IdempotencyKeyReusedError):
        return Problem(
            422,
            str(error),
            kind="idempotency-key-reused",
            title="Idempotency-Key reused with a different request",
            errors=[
                {
                    "field": "Idempotency-Key",
                    "rule": "same-request",
                    "message": "a key may only repeat the identical request",
                }
            ],
        )
    if isinstance(error, LineageCycleError):
        return Problem(
            409,
            str(error),
            kind="lineage-cycle",
            title="Lineage would form a cycle",
            cycle=[str(node) for node in error.cycle],
        )
    if isinstance(error, DatasetNameTakenError):
        return Problem(
            409,
            str(error),
            kind="dataset-name-taken",
            title="A dataset with this name already exists",
            datasetId=str(error.dataset_id),
        )
    if isinstance(error, DatasetRetiredError):
        return Problem(
            409, str(error), kind="dataset-retired", title="Dataset is retired"
        )
    if isinstance(error, SelfReviewError):
        return Problem(
            403,
            str(error),
            kind="self-review",
            title="An export's requester cannot review it",
        )
    if isinstance(error, ConflictError):
        return Problem(409, str(error))
    return Problem(409, str(error))


_UNKNOWN = re.compile(r"unknown field `([^`]*)`")
_MISSING = re.compile(r"missing required field `([^`]*)`")


def _client_errors(extra: Any) -> list[dict[str, str]]:
    """litestar/msgspec messages -> [{field, rule, message}]."""
    errors = []
    for item in extra if isinstance(extra, list) else []:
        message = str(item.get("message", ""))
        key = str(item.get("key", "")).removeprefix("data").lstrip(".") or "body"
        rule = "type"
        if message == "'data'":  # litestar's KeyError text for a missing body
            rule, key, message = "required", "body", "a JSON body is required"
        elif m := _UNKNOWN.search(message):
            rule, key = "unknown-field", f"{key}.{m.group(1)}".removeprefix("body.")
        elif m := _MISSING.search(message):
            rule, key = "required", f"{key}.{m.group(1)}".removeprefix("body.")
        elif "JSON" in message or "malformed" in message.lower():
            rule = "json"
        elif "length" in message:
            rule = "length"
        elif ">=" in message or "<=" in message or " > " in message or " < " in message:
            rule = "range"
        errors.append(
            {"field": key.replace("$.", ""), "rule": rule, "message": message}
        )
    return errors


def _validation(error: ValidationException) -> ProblemDetailsException:
    errors = _client_errors(error.extra)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or str(
        error.detail
    )
    return Problem(400, detail, errors=errors)


def _bad_json(detail: str) -> ProblemDetailsException:
    return Problem(
        400,
        detail,
        errors=[{"field": "body", "rule": "json", "message": "body is not valid JSON"}],
    )


def _http(error: HTTPException) -> ProblemDetailsException:
    status = error.status_code
    detail = str(error.detail)
    if status == 400 and isinstance(error.__cause__, SerializationException):
        return _bad_json(detail)
    if status == 413:
        return Problem(
            413, "the request body exceeds the configured limit", headers=error.headers
        )
    if status >= 500:
        return Problem(status, "an internal error occurred", headers=error.headers)
    extra = error.extra if isinstance(error.extra, dict) else {}
    return Problem(status, detail, headers=error.headers, **extra)


def _encoding(_: UnicodeDecodeError) -> ProblemDetailsException:
    return _bad_json("the body is not UTF-8")


def region_problem(error: RegionError) -> ProblemDetailsException:
    """503 for the DR regions' states (adapters.dr): never a 500, never half a write."""
    retry = {"Retry-After": str(error.retry_after_s)}
    if isinstance(error, ReadOnlyReplicaError):
        return Problem(
            503,
            f"region {error.region} is a read-only replica; writes go to the "
            f"primary {error.primary or '(none reachable)'}",
            kind="read-only-replica",
            title="Writes go to the primary region",
            headers=retry,
            region=error.region,
            primary=error.primary,
        )
    if isinstance(error, StaleEpochError):
        return Problem(
            503,
            str(error),
            kind="stale-epoch",
            title="The region is fenced by a newer epoch",
            headers=retry,
            region=error.region,
            nodeEpoch=error.node_epoch,
            epoch=error.epoch,
        )
    lag = error.lag_ms if isinstance(error, RegionUnavailableError) else None
    return Problem(
        503,
        str(error),
        kind="region-unavailable",
        title="No region can answer within the staleness limit",
        headers=retry,
        lagMs=lag,
    )


def _policy_busy(error: PolicyBusyError) -> ProblemDetailsException:
    """Nothing was decided or recorded: the tenant's policy workers are busy."""
    return Problem(
        503,
        str(error),
        kind="policy-busy",
        title="Policy evaluation is busy",
        headers={"Retry-After": str(max(1, round(error.retry_after_s)))},
    )


def _internal(_: Exception) -> ProblemDetailsException:
    return Problem(500, "an internal error occurred; see the server log")


def problem_plugin() -> ProblemDetailsPlugin:
    mapping: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
        ValidationException: _validation,
        HTTPException: _http,
        DomainError: _domain,
        UnicodeDecodeError: _encoding,
        RegionError: region_problem,
        PolicyBusyError: _policy_busy,
        Exception: _internal,
    }
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map=mapping,
        )
    )
