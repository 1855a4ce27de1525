"""The lineage projection folds dataset events into nodes and upstream sets."""

from __future__ import annotations

from eventsourcing.application import Application
from eventsourcing.persistence import Tracking

from domain.catalog.dataset import Dataset
from projections.lineage import LineageProjection
from tests.conftest import dataset_spec
from tests.fakes import MemoryLineageView

REGIONS = frozenset({"EU"})


def test_projection_builds_the_graph_in_one_batch() -> None:
    """Registered, LineageLinked and Retired fold into final state, tracked once."""
    app: Application = Application()
    raw = Dataset.register(tenant="acme", spec=dataset_spec("raw"), regions=REGIONS)
    clean = Dataset.register(
        tenant="acme", spec=dataset_spec("clean"), upstream=[raw.id], regions=REGIONS
    )
    report = Dataset.register(
        tenant="acme", spec=dataset_spec("report"), regions=REGIONS
    )
    report.link_upstream([clean.id])
    raw.retire("replaced")
    app.save(raw, clean, report)
    events = [
        app.mapper.to_domain_event(n)
        for n in app.recorder.select_notifications(start=1, limit=100)
    ]
    view = MemoryLineageView()
    items = [(e, Tracking("ledger", i + 1)) for i, e in enumerate(events)]
    LineageProjection(view=view).process_batch(items, Tracking("ledger", len(items)))

    up = view.lineage("acme", report.id, "up", 5)
    assert [(n.name, n.depth, n.status) for n in up.nodes] == [
        ("report", 0, "active"),
        ("clean", 1, "active"),
        ("raw", 2, "retired"),
    ]
    assert set(up.edges) == {(report.id, clean.id), (clean.id, raw.id)}
    assert view.max_tracking_id("ledger") == len(items)
    down = view.lineage("acme", raw.id, "down", 1)
    assert [n.name for n in down.nodes] == ["raw", "clean"]
    assert view.lineage("globex", report.id, "up", 5).nodes == []
