"""What a GraphQL document may ask for: depth, cost, aliases, size.

Checked at validation, before any resolver runs (so a refused query reads
and writes nothing). The cost counts the objects a query may return: each
object field costs its multiplier, and a list field multiplies what it
selects by its page size (``first``/``depth`` as given, the ceiling when it
is a variable, the default otherwise; ``upstream``/``downstream`` by an
assumed fan-out). Fragments are costed once each (memoised), so fragments
spread over fragments cannot make the check itself exponential; cycles are
the standard NoFragmentCycles rule's to report.

``Documents`` holds each distinct document text parsed and validated once
(every rule, the limits included): dashboards send the same few documents
with other variables, so a repeated document costs one dictionary look-up.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    ValidationRule,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from api.paging import SEARCH_LIMIT

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from graphql import (
        ASTValidationRule,
        DocumentNode,
        GraphQLSchema,
        OperationDefinitionNode,
        SelectionSetNode,
    )

MAX_DEPTH = 10
MAX_COST = 10_000
MAX_ALIASES = 30
MAX_TOKENS = 5_000
PAGE_CEILING = SEARCH_LIMIT
"""The REST lists' ceiling (the search's and the exports listing's: 200)."""
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


class Documents:
    """Each distinct document text parsed (token limit) and validated (every
    rule) once, for one schema; the newest ``size`` texts are kept.

    A document that does not parse is not kept (each try is parsed again), so
    a flood of broken documents cannot evict the good ones.
    """

    def __init__(
        self, rules: Sequence[type[ASTValidationRule]], *, size: int = 256
    ) -> None:
        self.rules = tuple(rules)
        self.schema: GraphQLSchema | None = None
        """Bound once the schema is built (api.graphql.schema.build_schema)."""
        self.checked = lru_cache(maxsize=size)(self._check)

    def _check(self, text: str) -> tuple[DocumentNode, list[GraphQLError]]:
        assert self.schema is not None, "Documents used before its schema was bound"
        document = parse(text, max_tokens=MAX_TOKENS)
        return document, validate_document(self.schema, document, self.rules)


class DocumentGate(SchemaExtension):
    """Parsing and validation through ``Documents`` (one per request)."""

    def __init__(self, documents: Documents) -> None:
        super().__init__()
        self.documents = documents
        self.errors: list[GraphQLError] = []

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            context.graphql_document, self.errors = self.documents.checked(
                context.query
            )
        yield

    def on_validate(self) -> Iterator[None]:
        # A list (even empty) tells strawberry the document is validated.
        self.execution_context.pre_execution_errors = list(self.errors)
        yield
