"""/console/exports/new: request a governed export of one dataset.

The form is handed to the same application call as POST /v1/exports (the
gate judges it; an allowed export starts in the background worker). The
decision is shown at once on the export's page: allowed with live progress,
or denied with every reason. The form carries an idempotency key made when it
was rendered, so a double submit replays the first request.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from api.console.exports import PRESETS
from api.console.session import ConsoleUser, require_scope
from api.problems import Problem, field_errors
from api.wiring.catalog import CatalogBundle
from api.wiring.core import Core
from api.wiring.exports import ExportsBundle
from application.base import IdempotencyKey
from domain.errors import ConflictError, NotFoundError, ValidationError
from domain.exports.request import PRESETS as PRESET_NAMES

Form = dict[str, str]
FIELDS = ("preset", "purpose", "destination_region")


def _dataset(user: ConsoleUser, catalog: CatalogBundle, raw: str | None) -> Any:
    try:
        dataset_id = UUID(raw or "")
        return catalog.registry.get_dataset(tenant=user.tenant, dataset_id=dataset_id)
    except ValueError:
        raise Problem(
            400,
            "dataset must be a dataset id",
            errors=[{"field": "dataset", "rule": "uuid", "message": "a dataset id"}],
        ) from None
    except NotFoundError:
        raise Problem(404, f"dataset {raw} not found") from None


def _context(
    user: ConsoleUser, core: Core, dataset: Any, **extra: Any
) -> dict[str, Any]:
    return {
        "user": user,
        "d": dataset,
        "presets": [p for name in PRESET_NAMES for p in PRESETS if p.name == name],
        "regions": sorted(core.settings.regions),
        "values": {"preset": "tokenize_strict", "region": dataset.region},
        "errors": {},
        "key": secrets.token_urlsafe(18),
        **extra,
    }


def _errors(error: ValidationError) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    for item in field_errors(error.violations):
        name = item["field"].replace("destinationRegion", "destination_region")
        by.setdefault(name if name in FIELDS else "form", []).append(
            f"{item['message']} ({item['rule']})"
        )
    return by


def _idempotency(key: str, dataset_id: UUID, values: Form) -> IdempotencyKey | None:
    """The form's key, bound to exactly these fields (a changed form is new)."""
    if not key:
        return None
    fingerprint = hashlib.sha256(
        "\0".join([str(dataset_id), *values.values()]).encode()
    ).hexdigest()
    return IdempotencyKey(f"console:{key}", fingerprint)


class ExportFormPages(Controller):
    """GET/POST /console/exports/new (export.request only)."""

    path = "/exports"

    @get("/new", name="console-export-new", sync_to_thread=True)
    def new_form(
        self,
        user: ConsoleUser,
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        dataset: FromQuery[str | None] = None,
    ) -> Template:
        """Choose a preset, purpose and destination for one dataset."""
        require_scope(user, "export.request")
        found = _dataset(user, catalog, dataset)
        return Template(
            "exports/new.html",
            context=_context(user, core, found),
            headers={"Cache-Control": "no-store"},
        )

    @post("/new", name="console-export-request", sync_to_thread=True, status_code=303)
    def request_export(
        self,
        user: ConsoleUser,
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        exports: NamedDependency[ExportsBundle],
        data: Annotated[Form, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        """Judge the request; go to the export's page, which shows the decision."""
        require_scope(user, "export.request")
        found = _dataset(user, catalog, data.get("dataset"))
        values = {name: data.get(name, "").strip() for name in FIELDS}
        try:
            decision = exports.app.request_export(
                tenant=user.tenant,
                dataset_id=found.id,
                preset=values["preset"],
                purpose=values["purpose"],
                destination_region=values["destination_region"],
                requester=user.sub,
                idempotency=_idempotency(data.get("key", ""), found.id, values),
            )
        except ValidationError as error:
            return self._again(user, core, found, values, _errors(error))
        except ConflictError as error:
            return self._again(user, core, found, values, {"form": [str(error)]})
        if not decision.replayed:  # as POST /v1/exports: count, then run
            core.metrics.export_decisions.labels(
                "true" if decision.allow else "false"
            ).inc()
            if decision.allow and not decision.pending_review:
                exports.start(decision.export_id)
        return Redirect(f"/console/exports/{decision.export_id}", status_code=303)

    @staticmethod
    def _again(
        user: ConsoleUser,
        core: Core,
        dataset: Any,
        values: Form,
        errors: dict[str, list[str]],
    ) -> Template:
        """The form again, with the user's values and each error beside its field."""
        shown = {**values, "region": values.get("destination_region", "")}
        return Template(
            "exports/new.html",
            context=_context(user, core, dataset, values=shown, errors=errors),
            status_code=422,
        )
