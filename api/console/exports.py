"""/console/exports: the tenant's exports, one export's decision, progress,
downloads and verify panel, and /console/presets.

Reads go through the same bundle as /v1/exports: the exports read model for
the list (same cursor encoding), the write model for one export (so live
progress shows), the bundle directory the proof route reads, and the DLP
engine's own decision table for the presets. The request form is in
api.console.export_form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from litestar.response import File, Template

from adapters.exports.dlp.presets import describe_presets
from api.console.export_proof import check_proof
from api.console.export_reasons import reasons_of
from api.console.session import ConsoleUser, require_scope
from api.paging import After
from api.paging import export_after as _after  # the API's own cursors
from api.paging import export_cursor as _cursor
from api.problems import Problem
from api.wiring.catalog import CatalogBundle
from api.wiring.core import Core
from api.wiring.exports import ExportsBundle
from domain.errors import NotFoundError
from domain.exports.export import PROOF_FILE

if TYPE_CHECKING:
    from pathlib import Path

    from domain.exports.export import Export

PAGE = 25
VIEW_SCOPES = ("export.request", "export.approve", "audit.read")
"""Who sees exports (the console's nav and dataset page use the same)."""
DOWNLOAD_SCOPES = ("export.request", "audit.read")
"""Who may fetch a proof (GET /v1/exports/{id}/proof's guard)."""
RUNNING = frozenset({"requested", "allowed", "delivered"})
"""Statuses a run moves on from by itself: the page keeps polling."""
STATUSES = (
    "requested",
    "pending_review",
    "allowed",
    "denied",
    "rejected",
    "delivered",
    "proven",
    "failed",
)
PRESETS = describe_presets()
"""The DLP engine's decision table (computed once, as the API does)."""
Status = Annotated[str | None, QueryParameter(max_length=32)]


def _export(user: ConsoleUser, exports: ExportsBundle, export_id: UUID) -> Export:
    """The tenant's export; another tenant's id is a 404, like the API's."""
    try:
        return exports.app.get_export(tenant=user.tenant, export_id=export_id)
    except NotFoundError:
        raise Problem(404, f"export {export_id} not found") from None


def live_context(
    user: ConsoleUser, exports: ExportsBundle, export: Export
) -> dict[str, Any]:
    """What the live part of an export's page shows (status, progress, files)."""
    progress = exports.progress(export.id)
    return {
        "user": user,
        "e": export,
        "running": export.status in RUNNING,
        "progress": progress,
        "reasons": reasons_of(
            export.reasons, export.floor_reasons, export.policy_reasons
        ),
        "can_download": user.can_any(*DOWNLOAD_SCOPES),
    }


def bundle_file(exports: ExportsBundle, export: Export, name: str) -> Path:
    """A file of a proven export's bundle (the one the proof route reads)."""
    allowed = {PROOF_FILE, export.file_name} - {""}
    path = exports.worker.pipeline.directory(export.id) / name
    if export.status != "proven" or name not in allowed or not path.is_file():
        raise Problem(
            404 if name not in allowed else 409,
            f"export {export.id} is {export.status}: no file {name!r} to download",
        )
    return path


class ExportPages(Controller):
    """The exports list, an export's page and its fragments and downloads."""

    path = "/exports"

    @get("/", name="console-exports", sync_to_thread=True)
    def list_exports(
        self,
        user: ConsoleUser,
        core: NamedDependency[Core],
        exports: NamedDependency[ExportsBundle],
        status: Status = None,
        after: After = None,
    ) -> Template:
        """The tenant's exports, newest first, filtered by status, paged."""
        require_scope(user, *VIEW_SCOPES)
        if status is not None and status not in STATUSES:
            raise Problem(400, f"status must be one of {', '.join(STATUSES)}")
        rows = exports.view.list_exports(
            user.tenant,
            status=status,
            dataset_id=None,
            after=_after(after) if after else None,
            limit=PAGE + 1,
        )
        nxt = _cursor(rows[PAGE - 1]) if len(rows) > PAGE else None
        return Template(
            "exports/list.html",
            context={
                "user": user,
                "rows": rows[:PAGE],
                "status": status,
                "statuses": STATUSES,
                "next": nxt,
                "after": after,
                "position": core.runners["exports"].status().position,
            },
            headers={"Cache-Control": "no-store"},
        )

    @get("/{export_id:uuid}", name="console-export", sync_to_thread=True)
    def export_page(
        self,
        user: ConsoleUser,
        export_id: FromPath[UUID],
        exports: NamedDependency[ExportsBundle],
        catalog: NamedDependency[CatalogBundle],
    ) -> Template:
        """The request, the decision with its reasons, progress, files, verify."""
        require_scope(user, *VIEW_SCOPES)
        export = _export(user, exports, export_id)
        try:
            name = catalog.registry.get_dataset(
                tenant=user.tenant, dataset_id=export.dataset_id
            ).name
        except NotFoundError:
            name = str(export.dataset_id)
        return Template(
            "exports/detail.html",
            context={**live_context(user, exports, export), "dataset_name": name},
            headers={"Cache-Control": "no-store"},
        )

    @get("/{export_id:uuid}/live", name="console-export-live", sync_to_thread=True)
    def live(
        self,
        user: ConsoleUser,
        export_id: FromPath[UUID],
        exports: NamedDependency[ExportsBundle],
    ) -> Template:
        """The status, progress and downloads fragment (htmx polls it while the
        export runs; once it stops running the fragment carries no trigger)."""
        require_scope(user, *VIEW_SCOPES)
        export = _export(user, exports, export_id)
        return Template(
            "exports/_live.html",
            context=live_context(user, exports, export),
            headers={"Cache-Control": "no-store"},
        )

    @get("/{export_id:uuid}/verify", name="console-export-verify", sync_to_thread=True)
    def verify(
        self,
        user: ConsoleUser,
        export_id: FromPath[UUID],
        core: NamedDependency[Core],
        exports: NamedDependency[ExportsBundle],
    ) -> Template:
        """Each check `conductor verify` makes on the bundle, with its result."""
        require_scope(user, *DOWNLOAD_SCOPES)
        export = _export(user, exports, export_id)
        if export.status != "proven":
            raise Problem(409, f"export {export_id} is {export.status}: no proof yet")
        directory = exports.worker.pipeline.directory(export.id)
        report = check_proof(directory, core.keys.public_keys())
        return Template(
            "exports/_verify.html",
            context={"user": user, "e": export, "report": report},
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/{export_id:uuid}/files/{name:str}",
        name="console-export-file",
        sync_to_thread=True,
    )
    def download(
        self,
        user: ConsoleUser,
        export_id: FromPath[UUID],
        name: FromPath[str],
        exports: NamedDependency[ExportsBundle],
    ) -> File:
        """The exported file or proof.dsse.json, as an attachment."""
        require_scope(user, *DOWNLOAD_SCOPES)
        export = _export(user, exports, export_id)
        path = bundle_file(exports, export, name)
        media = "application/json" if name == PROOF_FILE else None
        return File(
            path=path,
            filename=name,
            media_type=media,
            content_disposition_type="attachment",
        )


@get("/presets", name="console-presets", sync_to_thread=False)
def presets_page(user: ConsoleUser) -> Template:
    """What each preset does to each classification (the engine's table)."""
    labels = list(PRESETS[0].columns) if PRESETS else []
    return Template(
        "exports/presets.html",
        context={"user": user, "presets": PRESETS, "labels": labels},
    )
