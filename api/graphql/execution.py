"""Execution: plain scalar fields answered without graphql-core's general path.

A page of datasets is mostly plain fields (``name``, ``region``, ``purpose``):
attributes of a Python object, each a scalar or a list of scalars. graphql-core
completes every one through its general path (a resolve-info object, the
resolver chain, completion by type), which was a fifth of a catalog query's
time. For a field strawberry resolves by attribute (no resolver, no arguments,
no field extension, no middleware), reading the attribute and coercing it gives
the same answer; anything else (a null, a value that does not coerce, any other
field) takes the general path, which answers or reports it as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from graphql import GraphQLList, GraphQLNonNull, GraphQLScalarType, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

if TYPE_CHECKING:
    from collections.abc import Callable

    from graphql import GraphQLField, GraphQLObjectType
    from graphql.execution.collect_fields import FieldDetailsList
    from graphql.pyutils import AwaitableOrValue, Path, UndefinedType

Plan = tuple[str, "Callable[[Any], Any]", bool]
"""How to answer a plain field: the attribute, the scalar's coercion, a list?"""
_PLANS: WeakKeyDictionary[GraphQLObjectType, dict[str, Plan | None]] = (
    WeakKeyDictionary()
)
"""Per object type and field name: its plan, or None for the general path."""


def plan_of(field: GraphQLField | None) -> Plan | None:
    """The plan for a plain attribute field of scalar (or list of non-null
    scalar) type; None for any other field."""
    if field is None or field.args:
        return None
    if not getattr(field.resolve, "_is_default", False):
        return None  # a resolver, or a field extension (@auth) wraps it
    definition = field.extensions.get("strawberry-definition")
    if definition is None or definition.default_resolver is not getattr:
        return None
    kind, listed = field.type, False
    if isinstance(kind, GraphQLNonNull):
        kind = kind.of_type
    if isinstance(kind, GraphQLList):
        if not isinstance(kind.of_type, GraphQLNonNull):
            return None
        kind, listed = kind.of_type.of_type, True
    if not isinstance(kind, GraphQLScalarType):
        return None
    return definition.python_name, kind.coerce_output_value, listed


def _answer(plan: Plan, source: Any) -> Any:
    """The field's value, or Undefined when the general path must decide."""
    attribute, coerce, listed = plan
    value = getattr(source, attribute, None)
    if value is None:
        return Undefined  # null: the general path knows if that is an error
    try:
        if not listed:
            coerced = coerce(value)
            return Undefined if coerced is None else coerced
        if not isinstance(value, list | tuple):
            return Undefined
        items = [coerce(item) for item in value]
    except Exception:  # the general path reports it
        return Undefined
    return Undefined if any(i is None or i is Undefined for i in items) else items


class ConductorExecution(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context with the plain-field short cut."""

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> AwaitableOrValue[Any] | UndefinedType:
        node = field_details_list[0].node
        middleware = self.middleware_manager
        if (middleware is None or not middleware.middlewares) and not node.arguments:
            plans = _PLANS.get(parent_type)
            if plans is None:
                plans = _PLANS[parent_type] = {}
            name = node.name.value
            if name not in plans:
                plans[name] = plan_of(parent_type.fields.get(name))
            plan = plans[name]
            if plan is not None:
                answer = _answer(plan, source)
                if answer is not Undefined:
                    return answer
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
