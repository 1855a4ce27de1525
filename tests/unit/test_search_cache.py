"""The per-process search cache: pages filed by position, emptied by clear()."""

from __future__ import annotations

from typing import Any

from projections.catalog import CatalogPage, CatalogQuery, SearchCache


class CountingView:
    """Stands in for the catalog view: counts searches, may act mid-search."""

    def __init__(self) -> None:
        self.searches = 0
        self.during: Any = None

    def search(self, query: CatalogQuery) -> CatalogPage:
        self.searches += 1
        number = self.searches  # the page says which search made it
        if self.during is not None:
            self.during()
        return CatalogPage(items=(), total=number, facets={}, next_after=None)


QUERY = CatalogQuery(tenant="acme", q="orders")


def test_a_page_is_reused_at_its_position_and_dropped_at_the_next() -> None:
    view = CountingView()
    cache = SearchCache(view)  # type: ignore[arg-type]
    assert cache.search(QUERY, 5)[1] is False
    assert cache.search(QUERY, 5)[1] is True
    assert cache.search(QUERY, 6)[1] is False
    assert view.searches == 2


def test_clear_forgets_pages_even_at_the_same_position() -> None:
    view = CountingView()
    cache = SearchCache(view)  # type: ignore[arg-type]
    cache.search(QUERY, 5)
    cache.clear("B", 2)  # a listener: (region, epoch)
    page, hit = cache.search(QUERY, 5)
    assert (hit, page.total) == (False, 2)


def test_a_search_running_across_a_clear_does_not_file_its_page() -> None:
    """Begun on the old primary, finished after the switch and after a newer
    search at the same position: the older page must not replace the newer."""
    view = CountingView()
    cache = SearchCache(view)  # type: ignore[arg-type]

    def switch_then_search_again() -> None:
        view.during = None
        cache.clear("B", 2)
        assert cache.search(QUERY, 5)[0].total == 2  # the new primary's page

    view.during = switch_then_search_again
    stale, _ = cache.search(QUERY, 5)
    assert stale.total == 1
    page, hit = cache.search(QUERY, 5)
    assert (hit, page.total) == (True, 2)
