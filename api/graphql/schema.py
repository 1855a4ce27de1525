"""The GraphQL schema and its litestar controller (the composition module).

``build_schema(settings)`` joins the capabilities' root types, adds the limits
(api.graphql.limits) and, when the setting says so, refuses introspection.
``graphql_handlers(settings)`` is what api.app mounts: POST/GET /graphql, the
GraphiQL page at GET /graphql (text/html) and its vendored assets.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
import strawberry
import structlog
from graphql import GraphQLError, specified_rules
from graphql.validation import NoSchemaIntrospectionCustomRule
from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTasks
from litestar.static_files import create_static_files_router
from strawberry.extensions import (
    MaxAliasesLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.litestar import make_graphql_controller
from strawberry.tools import merge_types
from strawberry.types.unset import UNSET

from api.graphql.auth import AbacExtension, Auth
from api.graphql.context import GraphContext, graph_context
from api.graphql.datasets import CatalogCommands, CatalogRoot
from api.graphql.execution import ConductorExecution
from api.graphql.exports import ExportsCommands, ExportsRoot
from api.graphql.limits import (
    MAX_ALIASES,
    MAX_DEPTH,
    CostRule,
    DocumentGate,
    Documents,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar.types import ControllerRouterHandler

    from api.settings import Settings

_log = structlog.get_logger("conductor.graphql")
STATIC = Path(__file__).parent / "static"
IDE_HTML = (STATIC / "graphiql.html").read_text(encoding="utf-8")
Query = merge_types("Query", (CatalogRoot, ExportsRoot))
Mutation = merge_types("Mutation", (CatalogCommands, ExportsCommands))
RULES = [
    *specified_rules,
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(MAX_ALIASES).validation_rules,
    CostRule,
]
"""Every validation rule: graphql-core's standard ones and the limits."""
_CODES = {
    "more than 5000 tokens": "query-too-complex",
    "exceeds maximum operation depth": "query-too-deep",
    "aliases found": "query-too-complex",
    "introspection has been disabled": "introspection-disabled",
    "Syntax Error": "bad-request",
}
"""graphql-core's and strawberry's own errors carry no code: by their text
(first match wins; anything else is a ``validation`` error)."""


class ReadState(SchemaExtension):
    """Response ``extensions``: the read models' positions and lag (REST's
    x-ig-position / x-ig-lag-events), ``staleRead`` (x-ig-stale-read: whether
    any lagged) and the position of this request's last command; and a
    ``code`` on every error graphql-core raised itself (parse, validation)."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        for error in (result.errors if result is not None else None) or ():
            with_code(error)

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if not isinstance(context, GraphContext):
            return {}
        lag = max((r["lagEvents"] for r in context.reads.values()), default=0)
        answer: dict[str, Any] = {}
        if context.reads:
            answer["readModels"] = context.reads
            answer["staleRead"] = lag > 0
        if context.last_position is not None:
            answer["position"] = context.last_position
        return answer


class ConductorSchema(strawberry.Schema):
    """Errors are logged as one structlog line each, with their code and path
    only (strawberry's default logs every refusal with a traceback)."""

    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: Any = None,  # noqa: ARG002 - strawberry's signature
    ) -> None:
        for error in errors:
            with_code(error)
            _log.info(
                "graphql_error",
                code=(error.extensions or {}).get("code"),
                path=[str(p) for p in error.path or ()],
            )


def with_code(error: GraphQLError) -> None:
    """A ``code`` in the error's extensions (graphql-core's own have none)."""
    extensions = error.extensions if error.extensions is not None else {}
    if "code" not in extensions:
        error.extensions = {**extensions, "code": _code(error.message)}


def _code(message: str) -> str:
    for fragment, code in _CODES.items():
        if fragment in message:
            return code
    return "validation"


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with its limits; introspection as the setting says."""
    rules = list(RULES)
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    # Parsing and validating (limits included) once per distinct document:
    # dashboards send the same few documents with other variables.
    documents = Documents(rules)
    schema = ConductorSchema(
        query=Query,
        mutation=Mutation,
        extensions=[lambda: DocumentGate(documents), ReadState],
        execution_context_class=ConductorExecution,
    )
    documents.schema = schema._schema  # noqa: SLF001 - graphql-core's schema
    check_directives(schema)
    return schema


def check_directives(schema: strawberry.Schema) -> None:
    """Every field carrying @auth is enforced by its AbacExtension (and only
    fields carrying it have one): the directive cannot be left decorative."""
    for graphql_type in schema._schema.type_map.values():  # noqa: SLF001
        definition = (getattr(graphql_type, "extensions", None) or {}).get(
            "strawberry-definition"
        )
        for field in getattr(definition, "fields", ()):
            declared = [d.abac for d in field.directives if isinstance(d, Auth)]
            enforced = [
                e.scope for e in field.extensions if isinstance(e, AbacExtension)
            ]
            if declared != enforced:
                msg = (
                    f"{graphql_type.name}.{field.name}: @auth {declared} "
                    f"but enforced {enforced}"
                )
                raise TypeError(msg)


def printed_sdl(settings: Settings) -> str:
    """The SDL docs/schema.graphql holds."""
    return str(build_schema(settings)) + "\n"


def graphql_handlers(settings: Settings) -> list[ControllerRouterHandler]:
    """The /graphql controller (own auth, see api.graphql.context) and assets."""
    secret = settings.resolved_jwt_secret()
    base = make_graphql_controller(
        build_schema(settings),
        path="/graphql",
        graphql_ide="graphiql",
        allow_queries_via_get=True,
    )

    class GraphQLController(base):  # type: ignore[valid-type,misc]
        """strawberry's controller, its handlers without litestar dependencies:
        the context, root value and sub-response come from the view's own
        hooks (strawberry's come as four dependencies, one of them run in a
        worker thread, on every request)."""

        opt = {"exclude_from_auth": True}  # noqa: RUF012 - litestar reads it
        include_in_schema = False
        websocket_endpoint = None  # no subscriptions: no websocket route
        dependencies: ClassVar[dict[str, Any]] = {}  # none: see the docstring

        @post(status_code=200)
        async def handle_http_post(
            self, request: Request[Any, Any, Any]
        ) -> Response[Any]:
            return await self.execute_request(  # type: ignore[no-any-return]
                request=request, context=UNSET, root_value=UNSET
            )

        @get()
        async def handle_http_get(
            self, request: Request[Any, Any, Any]
        ) -> Response[Any]:
            return await self.execute_request(  # type: ignore[no-any-return]
                request=request, context=UNSET, root_value=UNSET
            )

        async def get_root_value(
            self,
            request: Request[Any, Any, Any],  # noqa: ARG002 - strawberry's hook
        ) -> None:
            return None

        async def get_sub_response(
            self,
            request: Request[Any, Any, Any],  # noqa: ARG002 - strawberry's hook
        ) -> Response[Any]:
            # One per request (strawberry's keeps it on the shared controller).
            return Response({}, background=BackgroundTasks([]))

        async def get_context(
            self, request: Request[Any, Any, Any], response: Response[Any]
        ) -> GraphContext:
            return await graph_context(request, response, secret)

        @property
        def graphql_ide_html(self) -> str:
            return IDE_HTML

        def encode_json(self, data: object) -> bytes:
            return msgspec.json.encode(data)  # as REST bodies are (faster)

    assets = create_static_files_router(
        path="/graphql/static",
        directories=[STATIC],
        opt={"exclude_from_auth": True},
        include_in_schema=False,
    )
    return [GraphQLController, assets]


if __name__ == "__main__":  # regenerate docs/schema.graphql
    from api.settings import Settings as _Settings

    sys.stdout.write(printed_sdl(_Settings(jwt_secret="-" * 32)))
