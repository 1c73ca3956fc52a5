"""Graph requests for one route: the tenant's token on every call, once more with a fresh one
when Graph refuses it (401). An `ErrorAccessDenied` is logged with which of its two causes it
is, read from the permissions in the token (never the token itself)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from gateway.entra.claims import required_roles, token_roles
from gateway.entra.tokens import TokenProviders
from gateway.graph.classify import explain_access_denied
from gateway.graph.client import GraphClient
from gateway.routing import Route
from gateway.transport import Answer

T = TypeVar("T")
log = structlog.get_logger("gateway.delivery")


class RouteCalls:
    """The Graph client and the token provider of one route, for one submission."""

    def __init__(self, graph: GraphClient, tokens: TokenProviders, route: Route) -> None:
        self.graph = graph
        self.route = route
        self.tenant = route.tenant
        self._provider = tokens.for_tenant(route.tenant)

    async def authorised(
        self, call: Callable[[str], Awaitable[T]], answer_of: Callable[[T], Answer]
    ) -> T:
        """`call(token)`, once more with a fresh token when Graph refuses the token (401)."""
        token = await self._provider.get()
        result = await call(token)
        if answer_of(result).status == 401:
            self._provider.invalidate()
            token = await self._provider.get()
            result = await call(token)
        answer = answer_of(result)
        if answer.status == 403 and answer.code == "ErrorAccessDenied":
            reason = explain_access_denied(
                token_roles(token),
                answer.message,
                mailbox=self.route.mailbox,
                needed=required_roles(self.tenant),
            )
            log.warning(
                "access_denied",
                tenant=self.tenant.name,
                mailbox=self.route.mailbox,
                request_id=answer.request_id,
                reason=reason,
            )
        return result

    async def request(self, call: Callable[[str], Awaitable[Answer]]) -> Answer:
        """`authorised` for a call that returns an answer alone."""
        return await self.authorised(call, lambda answer: answer)
