"""The register and amend forms: the registry's own rules, errors beside fields.

A form is turned into the API's request body (DatasetCreate / DatasetUpdate,
so msgspec's type rules are the API's) and handed to the same application
service; its RFC 9457-style field errors (api.problems.field_errors) are put
beside the matching inputs. The amend form carries the version it was read
at: a concurrent change comes back as the registry's VersionMismatchError and
is shown next to the user's unsaved values, which stay in the form.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template

from api.console.session import ConsoleUser, require_scope
from api.controllers.datasets import changes_from, spec_from
from api.problems import Problem, camel, field_errors
from api.schemas.catalog import DatasetCreate, DatasetUpdate
from api.wiring.catalog import CatalogBundle
from api.wiring.core import Core
from domain.errors import (
    ConflictError,
    NotFoundError,
    ValidationError,
    VersionMismatchError,
)
from domain.values import CLASSIFICATIONS, CONTRACT_STATUSES

if TYPE_CHECKING:
    from domain.catalog.dataset import Dataset

FIELDS = (
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
)
LISTS = ("purposes", "tags", "upstream")
_MSGSPEC_PATH = re.compile(r"at `\$\.([A-Za-z_]+)")
Form = dict[str, str]


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _columns(raw: str) -> list[dict[str, str]]:
    """One column a line: ``name: classification``."""
    columns = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        name, _, classification = line.partition(":")
        columns.append({"name": name.strip(), "classification": classification.strip()})
    return columns


def _body(form: Form, names: tuple[str, ...]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in names:
        raw, key = form.get(name, ""), camel(name)  # the API's JSON names
        if name in LISTS:
            body[key] = _split(raw)
        elif name == "columns":
            body[key] = _columns(raw)
        else:
            body[key] = raw.strip() if name != "description" else raw
    return body


def _form_values(dataset: Dataset) -> Form:
    return {
        "name": dataset.name,
        "description": dataset.description,
        "license": dataset.license,
        "purposes": ", ".join(dataset.purposes),
        "retention": dataset.retention,
        "region": dataset.region,
        "contract_version": dataset.contract_version,
        "contract_status": dataset.contract_status,
        "tags": ", ".join(dataset.tags),
        "owner": dataset.owner,
        "location": dataset.location,
        "columns": "\n".join(f"{c.name}: {c.classification}" for c in dataset.columns),
    }


def _errors_by_field(errors: list[dict[str, str]]) -> dict[str, list[str]]:
    """``columns[2].classification`` goes beside the columns box, and so on."""
    by: dict[str, list[str]] = {}
    for error in errors:
        top = re.split(r"[.\[]", error["field"], maxsplit=1)[0]
        top = re.sub(r"[A-Z]", lambda m: "_" + m.group(0).lower(), top)
        detail = error["message"]
        if error["field"] != camel(top):
            detail = f"{error['field']}: {detail}"
        by.setdefault(top if top in (*FIELDS, "upstream") else "form", []).append(
            f"{detail} ({error['rule']})"
        )
    return by


def _type_errors(error: msgspec.ValidationError) -> list[dict[str, str]]:
    match = _MSGSPEC_PATH.search(str(error))
    field = match.group(1) if match else "form"
    return [{"field": camel(field), "rule": "type", "message": str(error)}]


def _context(user: ConsoleUser, core: Core, **extra: Any) -> dict[str, Any]:
    return {
        "user": user,
        "regions": sorted(core.settings.regions),
        "statuses": sorted(CONTRACT_STATUSES),
        "classifications": sorted(CLASSIFICATIONS),
        "errors": {},
        **extra,
    }


class DatasetFormPages(Controller):
    """GET/POST /console/datasets/new and /console/datasets/{id}/edit."""

    path = "/datasets"

    @get("/new", name="console-register", sync_to_thread=False)
    def register_form(
        self, user: NamedDependency[ConsoleUser], core: NamedDependency[Core]
    ) -> Template:
        """An empty registration form (catalog.write only)."""
        require_scope(user, "catalog.write")
        values = {"contract_status": "active", "retention": "P1Y"}
        return Template(
            "dataset_form.html", context=_context(user, core, values=values, mode="new")
        )

    @post("/new", name="console-register-post", sync_to_thread=True, status_code=303)
    def register(
        self,
        user: NamedDependency[ConsoleUser],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        data: Annotated[Form, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        """Register through the registry; its errors come back beside the fields."""
        require_scope(user, "catalog.write")
        errors: list[dict[str, str]] = []
        try:
            body = msgspec.convert(
                _body(data, (*FIELDS, "upstream")), DatasetCreate, str_keys=True
            )
            result = catalog.registry.register_dataset(
                tenant=user.tenant, spec=spec_from(body), upstream=body.upstream
            )
        except msgspec.ValidationError as error:
            errors = _type_errors(error)
        except ValidationError as error:
            errors = field_errors(error.violations)
        except ConflictError as error:
            errors = [{"field": "name", "rule": "conflict", "message": str(error)}]
        if errors:
            return Template(
                "dataset_form.html",
                context=_context(
                    user,
                    core,
                    values=data,
                    mode="new",
                    errors=_errors_by_field(errors),
                ),
                status_code=422,
            )
        if result.position is not None:  # read your write in the search
            core.runners["catalog"].wait(
                result.position, core.settings.min_position_wait_s
            )
        return Redirect(
            f"/console/datasets/{result.id}?saved=registered", status_code=303
        )

    @get("/{dataset_id:uuid}/edit", name="console-amend", sync_to_thread=True)
    def amend_form(
        self,
        user: NamedDependency[ConsoleUser],
        dataset_id: FromPath[UUID],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
    ) -> Template:
        """The dataset's current fields, with the version they were read at."""
        require_scope(user, "catalog.write")
        dataset = _dataset(catalog, user, dataset_id)
        return Template(
            "dataset_form.html",
            context=_context(
                user,
                core,
                values=_form_values(dataset),
                mode="edit",
                d=dataset,
                version=dataset.version,
            ),
        )

    @post(
        "/{dataset_id:uuid}/edit",
        name="console-amend-post",
        sync_to_thread=True,
        status_code=303,
    )
    def amend(
        self,
        user: NamedDependency[ConsoleUser],
        dataset_id: FromPath[UUID],
        core: NamedDependency[Core],
        catalog: NamedDependency[CatalogBundle],
        data: Annotated[Form, Body(media_type=RequestEncodingType.URL_ENCODED)],
    ) -> Template | Redirect:
        """Amend with the form's version as If-Match; a newer one is shown."""
        require_scope(user, "catalog.write")
        current = _dataset(catalog, user, dataset_id)
        raw_version = data.get("version", "")
        if not raw_version.isascii() or not raw_version.isdigit():
            raise Problem(400, "the form has no valid 'version' (reload the page)")
        version = int(raw_version)
        errors: list[dict[str, str]] = []
        conflict: Dataset | None = None
        try:
            body = msgspec.convert(_body(data, FIELDS), DatasetUpdate, str_keys=True)
            changes = {
                name: value
                for name, value in changes_from(body).items()
                if value != getattr(current, name)
            }
            result = catalog.registry.amend_dataset(
                tenant=user.tenant,
                dataset_id=dataset_id,
                changes=changes,
                expected_version=version,
            )
        except msgspec.ValidationError as error:
            errors = _type_errors(error)
        except ValidationError as error:
            errors = field_errors(error.violations)
        except VersionMismatchError as error:
            conflict = current
            errors = [{"field": "form", "rule": "version", "message": str(error)}]
        except ConflictError as error:
            errors = [{"field": "name", "rule": "conflict", "message": str(error)}]
        if errors:
            return Template(
                "dataset_form.html",
                context=_context(
                    user,
                    core,
                    values=data,
                    mode="edit",
                    d=current,
                    version=version,
                    errors=_errors_by_field(errors),
                    conflict=conflict,
                    theirs=_form_values(conflict) if conflict else None,
                ),
                status_code=409 if conflict else 422,
            )
        if result.position is not None:
            core.runners["catalog"].wait(
                result.position, core.settings.min_position_wait_s
            )
        return Redirect(
            f"/console/datasets/{dataset_id}?saved=amended", status_code=303
        )


def _dataset(catalog: CatalogBundle, user: ConsoleUser, dataset_id: UUID) -> Dataset:
    try:
        return catalog.registry.get_dataset(tenant=user.tenant, dataset_id=dataset_id)
    except NotFoundError:
        raise Problem(404, f"dataset {dataset_id} not found") from None
