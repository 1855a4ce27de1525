"""The embedded SQLite lineage view: walks by direction and depth, tracking."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Literal

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from adapters.catalog.lineage_sqlite import SQLiteLineageView, open_sqlite_lineage
from projections.lineage import LineageChanges
from tests.fakes import MemoryLineageView

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from projections.lineage import LineageView

Direction = Literal["up", "down"]
DIRECTIONS: tuple[Direction, ...] = ("up", "down")
IDS = {name: uuid.uuid5(uuid.NAMESPACE_URL, f"/t/{name}") for name in "abcdefgx"}


def _node(name: str, tenant: str = "acme") -> dict[str, str]:
    return {"tenant": tenant, "name": name, "status": "active"}


def _diamond() -> LineageChanges:
    """a <- b, a <- c, b <- d, c <- d, d <- e; x belongs to another tenant."""
    i = IDS
    return LineageChanges(
        nodes={**{i[n]: _node(n) for n in "abcde"}, i["x"]: _node("x", "globex")},
        upstream={
            i["b"]: (i["a"],),
            i["c"]: (i["a"],),
            i["d"]: (i["b"], i["c"]),
            i["e"]: (i["d"],),
            i["x"]: (i["e"],),
        },
    )


@pytest.fixture
def view(tmp_path: Path) -> Iterator[SQLiteLineageView]:
    made = open_sqlite_lineage(tmp_path / "B" / "lineage.sqlite")
    yield made
    made.close()


def _walk(
    view: LineageView, root: str, direction: Direction, depth: int, tenant: str = "acme"
) -> list[tuple[str, int]]:
    graph = view.lineage(tenant, IDS[root], direction, depth)
    return [(n.name, n.depth) for n in graph.nodes]


def _edges(view: LineageView, root: str, direction: Direction, depth: int) -> set[str]:
    names = {v: k for k, v in IDS.items()}
    graph = view.lineage("acme", IDS[root], direction, depth)
    return {f"{names[d]}->{names[u]}" for d, u in graph.edges}


class TestWalks:
    def test_walks_up_and_down_bounded_by_depth(self, view: SQLiteLineageView) -> None:
        """Up follows upstream edges, down the reverse; depth limits the hops."""
        view.apply(_diamond(), Tracking("ledger", 1))
        assert _walk(view, "e", "up", 1) == [("e", 0), ("d", 1)]
        assert _walk(view, "e", "up", 3) == [
            ("e", 0),
            ("d", 1),
            ("b", 2),
            ("c", 2),
            ("a", 3),
        ]
        assert _walk(view, "a", "down", 2) == [("a", 0), ("b", 1), ("c", 1), ("d", 2)]
        assert _edges(view, "a", "down", 2) == {"b->a", "c->a", "d->b", "d->c"}

    def test_a_diamond_node_appears_once_at_its_shortest_depth(
        self, view: SQLiteLineageView
    ) -> None:
        """d reaches a through b and c: a is listed once, at depth 2."""
        view.apply(_diamond(), Tracking("ledger", 1))
        up = _walk(view, "d", "up", 10)
        assert up == [("d", 0), ("b", 1), ("c", 1), ("a", 2)]
        assert _edges(view, "d", "up", 10) == {"d->b", "d->c", "b->a", "c->a"}

    def test_walks_stay_inside_the_tenant(self, view: SQLiteLineageView) -> None:
        """Another tenant's node is neither a root nor reached by a walk."""
        view.apply(_diamond(), Tracking("ledger", 1))
        assert _walk(view, "e", "down", 5) == [("e", 0)]
        assert _walk(view, "x", "up", 5) == []
        assert _walk(view, "x", "up", 5, tenant="globex") == [("x", 0)]

    def test_same_answers_as_the_in_memory_view(self, view: SQLiteLineageView) -> None:
        """The SQL walk agrees with the reference fake on every root and depth."""
        memory = MemoryLineageView()
        for each in (view, memory):
            each.apply(_diamond(), Tracking("ledger", 1))
        for root in "abcde":
            for direction in DIRECTIONS:
                for depth in (1, 2, 5):
                    expected = memory.lineage("acme", IDS[root], direction, depth)
                    got = view.lineage("acme", IDS[root], direction, depth)
                    assert got == expected, (root, direction, depth)


class TestWrites:
    def test_a_link_replaces_the_upstream_set_and_retire_keeps_the_name(
        self, view: SQLiteLineageView
    ) -> None:
        """LineageLinked carries the whole set; Retired only the status."""
        i = IDS
        view.apply(_diamond(), Tracking("ledger", 1))
        view.apply(
            LineageChanges(
                nodes={i["a"]: {"status": "retired"}},
                upstream={i["d"]: (i["b"], i["f"]), i["f"]: ()},
            ),
            Tracking("ledger", 2),
        )
        view.apply(LineageChanges(nodes={i["f"]: _node("f")}), Tracking("ledger", 3))
        assert _walk(view, "d", "up", 2) == [("d", 0), ("b", 1), ("f", 1), ("a", 2)]
        graph = view.lineage("acme", i["a"], "up", 0)
        assert [(n.name, n.status) for n in graph.nodes] == [("a", "retired")]

    def test_a_position_is_applied_once(self, view: SQLiteLineageView) -> None:
        """The same or an older position is refused and changes nothing."""
        view.apply(_diamond(), Tracking("ledger", 5))
        g = IDS["g"]
        for position in (5, 4):
            with pytest.raises(IntegrityError):
                view.apply(
                    LineageChanges(nodes={g: _node("g")}), Tracking("ledger", position)
                )
        assert view.lineage("acme", g, "up", 1).nodes == []
        assert view.max_tracking_id("ledger") == 5

    def test_the_position_and_graph_survive_reopening(self, tmp_path: Path) -> None:
        """A restarted follower finds the store where it left it."""
        path = tmp_path / "lineage.sqlite"
        first = open_sqlite_lineage(path)
        first.apply(_diamond(), Tracking("ledger", 7))
        first.close()
        again = open_sqlite_lineage(path)
        try:
            assert again.max_tracking_id("ledger") == 7
            assert _walk(again, "b", "up", 1) == [("b", 0), ("a", 1)]
        finally:
            again.close()

    def test_reset_empties_the_graph_and_the_position(
        self, view: SQLiteLineageView
    ) -> None:
        """After reset a rebuild starts from the beginning of the log."""
        view.apply(_diamond(), Tracking("ledger", 3))
        view.reset()
        assert view.max_tracking_id("ledger") is None
        assert _walk(view, "a", "down", 3) == []
        view.apply(_diamond(), Tracking("ledger", 1))
        assert _walk(view, "b", "up", 1) == [("b", 0), ("a", 1)]


def test_the_tip_is_the_last_position_applied_with_a_chain_hash(
    view: SQLiteLineageView,
) -> None:
    """apply with a chain hash keeps (position, hash); without, the last one;
    reset drops it (as the Neo4j store does, test_neo4j_lineage)."""
    assert view.tip("ledger") is None
    view.apply(LineageChanges(), Tracking("ledger", 3), tip_hash="ab" * 32)
    view.apply(LineageChanges(), Tracking("ledger", 5))
    assert view.tip("ledger") == (3, "ab" * 32)
    assert view.max_tracking_id("ledger") == 5
    view.apply(LineageChanges(), Tracking("ledger", 8), tip_hash="cd" * 32)
    assert view.tip("ledger") == (8, "cd" * 32)
    view.reset()
    assert view.tip("ledger") is None
