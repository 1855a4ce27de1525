"""The exports' wiring: the gate (floor, sandboxed tenant policies) and the runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.exports.dlp.transformer import DlpTransformer
from adapters.exports.rego import TieredRegoEngine
from adapters.exports.rego_sandbox import Limits, RegoSandbox
from adapters.exports.view import PostgresExportsView, SQLiteExportsView
from adapters.signing.secrets import FileSecrets
from api.runtime.export_worker import ExportWorker
from api.wiring.core import Core, view_of
from application.exports.exports import Exports
from application.exports.pipeline import ExportPipeline

if TYPE_CHECKING:
    from uuid import UUID

    from adapters.catalog.datafiles import LocalDataFiles
    from api.settings import Settings
    from api.wiring.catalog import CatalogBundle
    from application.autopilot.metering import Meter
    from projections.exports import ExportsView


class ExportsBundle:
    """The export gate, its read model and the background runs."""

    def __init__(
        self, *, app: Exports, view: ExportsView, worker: ExportWorker
    ) -> None:
        self.app = app
        self.view = view
        self.worker = worker

    def start(self, export_id: UUID) -> None:
        """Run an allowed export in the background."""
        self.worker.start(export_id)

    def progress(self, export_id: UUID) -> tuple[int, int] | None:
        return self.worker.progress(export_id)


def wire_exports(
    core: Core, catalog: CatalogBundle, files: LocalDataFiles, meter: Meter | None
) -> ExportsBundle:
    """The gate (platform floor, tenant policies in the sandbox) and the runs."""
    settings, switches = core.settings, core.switches
    app = Exports(
        core.ledger,
        datasets=catalog.registry,
        engine=policy_engine(settings),
        regions=frozenset(settings.regions),
        sources=files,
        review_required=lambda: switches.is_on("manual-export-review"),
    )
    pipeline = ExportPipeline(
        exports=app,
        transformer=DlpTransformer(workers=settings.dlp_workers),
        sources=files,
        secrets=FileSecrets(settings.var_path / "tokenization-secret"),
        signer=core.keys,
        checkpoints=core.checkpoints,
        out_dir=settings.var_path / "exports",
    )
    worker = ExportWorker(pipeline, core.metrics)
    worker.meter = meter
    return ExportsBundle(
        app=app,
        view=view_of(core.ledger, SQLiteExportsView, PostgresExportsView),
        worker=worker,
    )


def policy_engine(settings: Settings) -> TieredRegoEngine:
    """Shipped policies in process; tenants' own in the confined worker pool."""
    sandbox = RegoSandbox(
        workers=settings.policy_workers,
        limits=Limits(
            cpu_s=settings.policy_cpu_s,
            wall_s=settings.policy_wall_s,
            memory_bytes=settings.policy_memory_mb * 1024 * 1024,
            output_bytes=settings.policy_output_kb * 1024,
        ),
        per_tenant=settings.policy_per_tenant,
    )
    return TieredRegoEngine(sandbox)
