"""The per-tenant lineage graph refuses any edge that would close a cycle."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.catalog.lineage import LineageGraph
from domain.errors import LineageCycleError


def test_add_edges_records_new_edges_only() -> None:
    """Adding the same edge twice records one event."""
    graph = LineageGraph(tenant="acme")
    a, b = uuid4(), uuid4()
    graph.add_edges(b, [a])
    graph.add_edges(b, [a])
    assert [type(e).__name__ for e in graph.collect_events()] == [
        "Started",
        "EdgesAdded",
    ]
    assert graph.upstream_of(b) == (a,)


def test_a_closing_edge_raises_with_the_cycle_path() -> None:
    """a <- b <- c, then c upstream of a: the error names a -> c -> b -> a."""
    graph = LineageGraph(tenant="acme")
    a, b, c = uuid4(), uuid4(), uuid4()
    graph.add_edges(b, [a])
    graph.add_edges(c, [b])
    with pytest.raises(LineageCycleError) as caught:
        graph.add_edges(a, [c])
    assert caught.value.cycle == (a, c, b, a)
    assert graph.upstream_of(a) == ()


def test_diamonds_are_not_cycles() -> None:
    """Two paths to the same ancestor are fine."""
    graph = LineageGraph(tenant="acme")
    root, left, right, sink = uuid4(), uuid4(), uuid4(), uuid4()
    graph.add_edges(left, [root])
    graph.add_edges(right, [root])
    graph.add_edges(sink, [left, right])
    assert set(graph.upstream_of(sink)) == {left, right}


def test_long_chains_are_checked_without_recursion_limits() -> None:
    """A 1,500-deep chain still detects the closing edge (iterative search)."""
    graph = LineageGraph(tenant="acme")
    nodes = [uuid4() for _ in range(1500)]
    for down, up in zip(nodes[1:], nodes, strict=False):
        graph.add_edges(down, [up])
    with pytest.raises(LineageCycleError) as caught:
        graph.add_edges(nodes[0], [nodes[-1]])
    assert len(caught.value.cycle) == 1501
