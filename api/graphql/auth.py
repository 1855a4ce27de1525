"""@auth(abac: "scope"): the schema directive and the one mechanism enforcing it.

A field declares its rule once, ``guarded("catalog.read")``: the directive
(printed in the SDL) and the field extension that enforces it are made from
that one declaration, and the schema assembly refuses a field carrying the
directive without the extension. The rule, for every such field
(docs/graphql.md#abac):

1. the token must hold the scope (else ``forbidden``; no token: ``unauthorized``);
2. attribute arguments (``region``, ``destinationRegion``, ``purpose`` and an
   ``input``'s region and purposes) must lie within the token's ``regions`` /
   ``purposes`` claims; a query filter the token restricts but the caller left
   out is filled in when the claim names exactly one value;
3. a ``target`` argument naming a dataset must name one the token may see
   (else ``not-found``, the same answer as for an id that does not exist);
4. results are filtered: an object of another tenant, of a region outside the
   claim, or with no purpose within the claim, resolves to null (or is left
   out of a list), so nothing of it leaks.

Errors from the application services become GraphQL errors carrying the REST
problem: ``extensions.code`` is the problem type (``not-found``,
``validation`` with ``errors[].field``, ``precondition-failed``,
``export-denied`` with its reasons...), mapped by api.problems' own table.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, TypeVar, cast
from uuid import UUID

import strawberry
import structlog
from graphql import GraphQLError
from litestar.plugins.problem_details import ProblemDetailsException
from strawberry.extensions import FieldExtension
from strawberry.schema_directive import Location

from api.graphql.context import GraphContext
from api.problems import Problem, problem_plugin

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from strawberry.types import Info

    from api.auth import Principal

F = TypeVar("F", bound="Callable[..., Any]")
REGION_ARGUMENTS = ("region", "destination_region")
PURPOSE_ARGUMENTS = ("purpose",)
_log = structlog.get_logger("conductor.graphql")
_PROBLEMS = problem_plugin().config.exception_to_problem_detail_map


@strawberry.schema_directive(
    name="auth",
    locations=[Location.FIELD_DEFINITION],
    description="ABAC rule: the scope the token needs (docs/graphql.md#abac).",
)
class Auth:
    abac: str


class AbacExtension(FieldExtension):
    """Enforces one field's @auth rule: scope, attributes, tenant, visibility."""

    def __init__(self, scope: str, *, target: str | None = None) -> None:
        self.scope = scope
        self.target = target
        """The argument naming a dataset this field acts on (checked first)."""
        self.arguments: list[Any] = []

    def apply(self, field: Any) -> None:
        """Called by strawberry with the field (its arguments, for filter)."""
        self.arguments = list(field.arguments)

    def resolve(
        self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        assert self.target is None, "a target is checked on async fields only"
        who = self._admit(info)
        kwargs = narrowed(who, self._with_filter(kwargs))
        try:
            return visible(who, next_(source, info, **kwargs))
        except GraphQLError:
            raise
        except Exception as error:
            raise graph_error(error) from error

    async def resolve_async(
        self,
        next_: Callable[..., Awaitable[Any]],
        source: Any,
        info: Info,
        **kwargs: Any,
    ) -> Any:
        who = self._admit(info)
        kwargs = narrowed(who, self._with_filter(kwargs))
        try:
            if self.target is not None:
                await _check_target(info.context, who, kwargs[self.target])
            return visible(who, await next_(source, info, **kwargs))
        except GraphQLError:
            raise
        except Exception as error:
            raise graph_error(error) from error

    def _with_filter(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """An empty ``filter`` input where none was given, so the attribute
        rule narrows it like one that was."""
        if "filter" not in kwargs or kwargs["filter"] is not None:
            return kwargs
        for argument in self.arguments:
            if argument.python_name == "filter":
                kind = getattr(argument.type, "of_type", argument.type)
                return {**kwargs, "filter": kind()}
        return kwargs

    def _admit(self, info: Info) -> Principal:
        context = info.context
        assert isinstance(context, GraphContext)
        who = context.principal
        if who is None:
            raise coded(Problem(401, "send Authorization: Bearer <token>"))
        if self.scope not in who.scopes:
            raise coded(Problem(403, f"this needs the '{self.scope}' scope"))
        return who


def guarded(
    scope: str, *, target: str | None = None, mutation: bool = False
) -> Callable[[F], F]:
    """``strawberry.field`` (or ``mutation``) under the rule @auth(abac: scope):
    the directive and its enforcing extension, from this one declaration."""
    make = strawberry.mutation if mutation else strawberry.field
    decorator = make(
        directives=[Auth(abac=scope)],
        extensions=[AbacExtension(scope, target=target)],
    )
    return cast("Callable[[F], F]", decorator)


def allows(who: Principal, obj: object) -> bool:
    """Whether ``who`` may see ``obj`` (an object without a tenant: yes)."""
    tenant = getattr(obj, "tenant", None)
    if tenant is None:
        return True
    if tenant != who.tenant:
        return False
    region = getattr(obj, "region", None)
    if who.regions is not None and region is not None and region not in who.regions:
        return False
    purposes: Iterable[str] | None = getattr(obj, "purposes", None)
    return (
        who.purposes is None or purposes is None or bool(set(purposes) & who.purposes)
    )


class Sight:
    """What one principal may see: objects, and values of attribute facets."""

    def __init__(self, who: Principal) -> None:
        self.who = who

    def sees(self, obj: object) -> bool:
        return allows(self.who, obj)

    def sees_value(self, attribute: str, value: str) -> bool:
        """Whether a facet value may be shown (a count over objects of a
        region or purpose outside the claim would leak them)."""
        claim = {"region": self.who.regions, "purpose": self.who.purposes}.get(
            attribute
        )
        return claim is None or value in claim


def visible(who: Principal, result: Any) -> Any:
    """The result with what ``who`` may not see taken out (objects: null)."""
    if isinstance(result, list):
        return [item for item in result if allows(who, item)]
    filtered = getattr(result, "visible_to", None)
    if callable(filtered):
        return filtered(Sight(who))
    return result if allows(who, result) else None


def narrowed(who: Principal, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Attribute arguments checked against the claims (rule 2); a ``filter``
    input's region and purpose are attribute arguments too."""
    kwargs = _narrow(who, dict(kwargs), "")
    given = kwargs.get("filter")
    if given is not None:
        fields = {"region": given.region, "purpose": given.purpose}
        kwargs["filter"] = dataclasses.replace(given, **_narrow(who, fields, "filter."))
    written = kwargs.get("input")
    if written is not None:
        _check_input(who, written)
    return kwargs


def _narrow(who: Principal, values: dict[str, Any], prefix: str) -> dict[str, Any]:
    for names, claim, label in (
        (REGION_ARGUMENTS, who.regions, "regions"),
        (PURPOSE_ARGUMENTS, who.purposes, "purposes"),
    ):
        if claim is None:
            continue
        for name in names:
            if name not in values:
                continue
            value = values[name]
            if value is None and len(claim) == 1:
                values[name] = next(iter(claim))
            elif value is None:
                raise _needs(prefix + name, label, claim)
            elif value not in claim:
                raise _outside(prefix + name, value, label, claim)
    return values


def _check_input(who: Principal, written: Any) -> None:
    """What a command writes must be visible to its writer (rule 2)."""
    region = getattr(written, "region", None)
    regions, purposes = who.regions, who.purposes
    if regions is not None and isinstance(region, str) and region not in regions:
        raise _outside("input.region", region, "regions", regions)
    wanted = getattr(written, "purpose", None)
    if purposes is not None and isinstance(wanted, list) and not set(wanted) & purposes:
        raise _outside("input.purpose", ",".join(wanted), "purposes", purposes)


def _outside(field: str, value: str, label: str, claim: frozenset[str]) -> GraphQLError:
    return coded(
        Problem(
            403,
            f"this token's {label} claim ({', '.join(sorted(claim))}) "
            f"does not cover {field} {value!r}",
            errors=[{"field": field, "rule": "abac", "message": f"not in {label}"}],
        )
    )


def _needs(field: str, label: str, claim: frozenset[str]) -> GraphQLError:
    return coded(
        Problem(
            400,
            f"this token is limited to {label} {', '.join(sorted(claim))}: "
            f"pass {field} (one of them)",
            errors=[{"field": field, "rule": "abac", "message": "required"}],
        )
    )


async def _check_target(context: GraphContext, who: Principal, raw: Any) -> None:
    """The dataset a command names, from the write model (a command must not
    miss a dataset the read model has not caught up with yet)."""
    try:
        dataset_id = UUID(str(raw))
    except ValueError:
        raise coded(Problem(404, f"dataset {raw} not found")) from None
    registry = context.catalog.registry
    dataset = await context.run(
        lambda: registry.get_dataset(tenant=who.tenant, dataset_id=dataset_id)
    )
    if not allows(who, dataset):
        raise coded(Problem(404, f"dataset {raw} not found"))
    context.targets[dataset_id] = dataset


def graph_error(error: Exception) -> GraphQLError:
    """An application error as a GraphQL error carrying its REST problem
    (anything unexpected: an ``internal`` error, logged with its traceback)."""
    if isinstance(error, ProblemDetailsException):
        return coded(error)
    for kind in type(error).__mro__:
        mapper = _PROBLEMS.get(kind)
        if mapper is None:
            continue
        if kind is Exception:
            _log.error("graphql_field_failed", exc_info=error)
        return coded(mapper(error))
    return coded(Problem(500, "an internal error occurred; see the server log"))


def coded(problem: ProblemDetailsException) -> GraphQLError:
    """``extensions``: code (the problem type), status, title and its fields."""
    extra = problem.extra if isinstance(problem.extra, dict) else {}
    code = (problem.type_ or "/problems/error").removeprefix("/problems/")
    extensions: dict[str, Any] = {
        "code": code,
        "type": problem.type_,
        "status": problem.status_code,
        "title": problem.title,
        **extra,
    }
    errors = extensions.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        extensions.setdefault("field", errors[0].get("field"))
    return GraphQLError(str(problem.detail), extensions=extensions)


def check_page(first: int, most: int, *, field: str = "first") -> None:
    """The page-size ceiling (the REST lists' ``limit`` ceilings)."""
    if not 1 <= first <= most:
        raise coded(
            Problem(
                400,
                f"{field} must be between 1 and {most}",
                errors=[{"field": field, "rule": "range", "message": f"1..{most}"}],
            )
        )
