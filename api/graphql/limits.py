"""What a GraphQL document may ask for: depth, cost, aliases, size.

Checked at validation, before any resolver runs (so a refused query reads
and writes nothing). The cost counts the objects a query may return: each
object field costs its multiplier, and a list field multiplies what it
selects by its page size (``first``/``depth`` as given, the ceiling when it
is a variable, the default otherwise; ``upstream``/``downstream`` by an
assumed fan-out). Fragments are costed once each (memoised), so fragments
spread over fragments cannot make the check itself exponential; cycles are
the standard NoFragmentCycles rule's to report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    ValidationRule,
)

if TYPE_CHECKING:
    from graphql import OperationDefinitionNode, SelectionSetNode

MAX_DEPTH = 10
MAX_COST = 10_000
MAX_ALIASES = 30
MAX_TOKENS = 5_000
PAGE_CEILING = 200
"""The REST lists' ceiling (api.controllers.datasets.MAX_LIMIT)."""
LISTS = {
    "datasets": ("first", 20),
    "datasetsConnection": ("first", 20),
    "exports": ("first", 50),
    "lineage": ("depth", 3),
    "upstream": (None, 5),
    "downstream": (None, 5),
    "history": (None, 20),
}
"""List fields: the argument giving their size and the size assumed without it."""


class CostRule(ValidationRule):
    """Refuses an operation whose cost exceeds MAX_COST (``query-too-complex``)."""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._fragments: dict[str, int] = {}
        self._open: set[str] = set()

    def enter_operation_definition(
        self, node: OperationDefinitionNode, *_: Any
    ) -> None:
        cost = self._cost(node.selection_set)
        if cost > MAX_COST:
            self.report_error(
                GraphQLError(
                    f"this query may return {cost} objects, more than the "
                    f"limit {MAX_COST}: ask for smaller pages or fewer fields",
                    node,
                    extensions={
                        "code": "query-too-complex",
                        "cost": cost,
                        "limit": MAX_COST,
                    },
                )
            )

    def _cost(self, selections: SelectionSetNode | None) -> int:
        total = 0
        for node in selections.selections if selections else ():
            if isinstance(node, FieldNode):
                total += self._field(node)
            elif isinstance(node, InlineFragmentNode):
                total += self._cost(node.selection_set)
            elif isinstance(node, FragmentSpreadNode):
                total += self._fragment(node.name.value)
            if total > MAX_COST:
                return total  # enough to refuse: stop counting
        return total

    def _field(self, node: FieldNode) -> int:
        name = node.name.value
        if name.startswith("__") or node.selection_set is None:
            return 0  # scalars and introspection are free (aliases are capped)
        size = 1
        if name in LISTS:
            argument, default = LISTS[name]
            size = default
            for given in node.arguments or ():
                if given.name.value != argument:
                    continue
                value = given.value
                literal = isinstance(value, IntValueNode)
                size = (
                    max(1, int(value.value))  # type: ignore[attr-defined]
                    if literal
                    else PAGE_CEILING
                )
        return size + size * self._cost(node.selection_set)

    def _fragment(self, name: str) -> int:
        if name in self._fragments:
            return self._fragments[name]
        if name in self._open:
            return 0  # a cycle: NoFragmentCycles reports it
        fragment = self.context.get_fragment(name)
        if fragment is None:
            return 0  # KnownFragmentNames reports it
        self._open.add(name)
        cost = self._cost(fragment.selection_set)
        self._open.discard(name)
        self._fragments[name] = cost
        return cost
