"""A dataset's lineage as a server-rendered SVG: upstream left, downstream right."""

from __future__ import annotations

from typing import TYPE_CHECKING

from markupsafe import Markup, escape

if TYPE_CHECKING:
    from uuid import UUID

    from projections.catalog import LineageGraphView

_W, _H, _GAP_X, _GAP_Y, _PAD = 180, 34, 60, 14, 12
_LABEL = 24


def _label(name: str) -> str:
    return name if len(name) <= _LABEL else name[: _LABEL - 1] + "…"


def lineage_svg(
    root: UUID, root_name: str, up: LineageGraphView, down: LineageGraphView
) -> Markup:
    """Columns by hop count (upstream negative, downstream positive), edges as
    lines from an upstream box to its downstream box; each box links to its page."""
    place: dict[UUID, tuple[int, str, str]] = {root: (0, root_name, "active")}
    for graph, sign in ((up, -1), (down, 1)):
        for node in graph.nodes:
            if node.id != root and node.id not in place:
                place[node.id] = (sign * node.depth, node.name, node.status)
    columns: dict[int, list[UUID]] = {}
    for node_id, (col, _, _) in sorted(place.items(), key=lambda i: i[1][1]):
        columns.setdefault(col, []).append(node_id)
    lo, hi = min(columns), max(columns)
    rows = max(len(ids) for ids in columns.values())
    width = (hi - lo + 1) * (_W + _GAP_X) - _GAP_X + 2 * _PAD
    height = rows * (_H + _GAP_Y) - _GAP_Y + 2 * _PAD
    xy: dict[UUID, tuple[int, int]] = {}
    for col, ids in columns.items():
        top = (height - (len(ids) * (_H + _GAP_Y) - _GAP_Y)) // 2
        for i, node_id in enumerate(ids):
            xy[node_id] = (_PAD + (col - lo) * (_W + _GAP_X), top + i * (_H + _GAP_Y))
    edges = {e for e in (*up.edges, *down.edges) if e[0] in xy and e[1] in xy}
    parts = [
        f'<svg class="lineage" role="group" aria-labelledby="lineage-title" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="lineage-title">Lineage of {escape(root_name)}: '
        f"{len(place) - 1} related datasets, {len(edges)} links</title>",
    ]
    for downstream, upstream in sorted(edges, key=str):
        (x1, y1), (x2, y2) = xy[upstream], xy[downstream]
        parts.append(
            f'<line x1="{x1 + _W}" y1="{y1 + _H // 2}" x2="{x2}" '
            f'y2="{y2 + _H // 2}" marker-end="url(#arrow)"/>'
        )
    parts.append(
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="6" markerHeight="6" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#6b7684"/></marker></defs>'
    )
    for node_id, (x, y) in xy.items():
        col, name, status = place[node_id]
        klass = "root" if node_id == root else f"node status-{escape(status)}"
        label = _label(name) + (" (retired)" if status == "retired" else "")
        parts.append(
            f'<a href="/console/datasets/{node_id}" class="{klass}" '
            f'data-lineage-id="{node_id}"><title>{escape(name)}</title>'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="4"/>'
            f'<text x="{x + 8}" y="{y + _H // 2 + 4}">{escape(label)}</text></a>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated value is escaped
