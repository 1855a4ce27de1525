"""/v1/policies: the tenant's export gate, its bindings and the exact Rego."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from api.auth import requires
from api.paging import (
    After,
    bad_cursor,
    ceiling,
    decode_key,
    encode_key,
    next_link,
)
from api.problems import Problem
from api.requests import principal
from api.schemas.exports import (
    PolicyBindingOut,
    PolicyCreate,
    PolicyModuleOut,
    PolicyOut,
    PolicyPage,
    PolicyPublished,
)
from api.wiring.exports import ExportsBundle

Limit = Annotated[int, QueryParameter(ge=1, le=200, description=ceiling(50, 200))]


class PolicyController(Controller):
    path = "/v1/policies"
    tags = ["exports"]  # noqa: RUF012

    @post(
        "/",
        operation_id="PublishPolicy",
        guards=[requires("export.approve")],
        sync_to_thread=True,
        status_code=201,
    )
    def publish_policy(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[PolicyCreate],
        exports: NamedDependency[ExportsBundle],
    ) -> Response[PolicyPublished]:
        """Publish a Rego module set (compiled first); bind the tenant's gate to it."""
        result = exports.app.policies.publish_policy(
            tenant=principal(request).tenant,
            name=data.name,
            sources=[(m.name, m.source) for m in data.modules],
        )
        body = PolicyPublished(digest=result.digest, position=result.position)
        status = 201 if result.position is not None else 200
        return Response(
            body,
            status_code=status,
            headers={"Location": f"/v1/policies/{result.digest}"},
        )

    @get(
        "/",
        operation_id="ListPolicies",
        guards=[requires("export.request", "export.approve", "audit.read")],
        sync_to_thread=True,
    )
    def list_policies(
        self,
        request: Request[Any, Any, Any],
        exports: NamedDependency[ExportsBundle],
        after: After = None,
        limit: Limit = 50,
    ) -> Response[PolicyPage]:
        """The policies the tenant's export gate was bound to, newest first."""
        policies = exports.app.policies
        history = policies.bindings(principal(request).tenant)
        newest = history[0][1] if history else None
        if after:
            before = decode_key(after, listing="policy list")
            if not before.isascii() or not before.isdigit():
                raise bad_cursor("policy list")
            history = [(d, at) for d, at in history if at < int(before)]
        page = history[:limit]
        cursor = encode_key(str(page[-1][1])) if len(history) > limit else None
        body = PolicyPage(
            items=[
                PolicyBindingOut(
                    digest=digest,
                    name=policies.get_policy(digest).name,
                    bound_at=at,
                    published_at=policies.policy_position(digest),
                    active=at == newest,
                )
                for digest, at in page
            ],
            next=cursor,
            platform_digest=policies.platform_digest,
        )
        return Response(body, headers=next_link(request, cursor))

    @get(
        "/{digest:str}",
        operation_id="GetPolicy",
        guards=[requires("export.request", "export.approve", "audit.read")],
        sync_to_thread=True,
    )
    def get_policy(
        self,
        request: Request[Any, Any, Any],
        digest: FromPath[str],
        exports: NamedDependency[ExportsBundle],
    ) -> PolicyOut:
        """The exact modules behind a digest, and where they were published:
        the shipped ones, or one the caller's tenant has bound (else 404)."""
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise Problem(404, f"policy {digest[:80]} not found")
        tenant = principal(request).tenant
        policy, position = exports.app.policies.visible_policy(tenant, digest)
        return PolicyOut(
            digest=policy.digest,
            name=policy.name,
            engine=policy.engine,
            modules=[PolicyModuleOut(name=n, source=s) for n, s in policy.sources],
            position=position,
        )
