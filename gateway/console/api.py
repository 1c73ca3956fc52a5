"""The JSON API under `/api/v1`: the console's data and actions for scripts, behind the same
sign-in (a session cookie plus its CSRF token in `X-CSRF-Token` for changes, or a bearer
token from `console.api_tokens`). `/api/openapi.json` describes it.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from gateway.console.context import Context, client, principal
from gateway.console.filters import FilterError, parse_filter
from gateway.console.handlers import stream
from gateway.console.openapi import document
from gateway.console.service import Forbidden, NotFound
from gateway.console.testmail import TestMailRefused
from gateway.errors import SpoolError

log = structlog.get_logger("gateway.console")


def problem(text: str, status: int) -> web.Response:
    return web.json_response({"error": text}, status=status)


class Api:
    """The JSON routes."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/openapi.json", self.openapi),
            web.get("/api/v1/whoami", self.whoami),
            web.get("/api/v1/overview", self.overview),
            web.get("/api/v1/devices", self.devices),
            web.get("/api/v1/messages", self.messages),
            web.get("/api/v1/messages/{queue_id}", self.message),
            web.get("/api/v1/messages/{queue_id}/raw", self.raw),
            web.post("/api/v1/actions", self.act),
            web.post("/api/v1/test-message", self.test_message),
        ]

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(document())

    async def whoami(self, request: web.Request) -> web.Response:
        who = principal(request)
        body: dict[str, Any] = {"name": who.name, "role": who.role}
        if who.session is not None:
            body["csrf_token"] = who.session.csrf
        return web.json_response(body)

    async def overview(self, _request: web.Request) -> web.Response:
        return web.json_response(await self._context.service.overview())

    async def devices(self, _request: web.Request) -> web.Response:
        return web.json_response(self._context.service.devices())

    async def messages(self, request: web.Request) -> web.Response:
        try:
            where = parse_filter(request.query)
        except FilterError as error:
            return problem(str(error), 400)
        return web.json_response(await self._context.service.messages(where))

    async def message(self, request: web.Request) -> web.Response:
        queue_id = request.match_info["queue_id"]
        try:
            return web.json_response(await self._context.service.message(queue_id))
        except NotFound:
            return problem(f"no message {queue_id} in the queue", 404)

    async def raw(self, request: web.Request) -> web.StreamResponse:
        queue_id = request.match_info["queue_id"]
        try:
            found = await self._context.service.raw(principal(request), queue_id, client(request))
        except Forbidden as error:
            return problem(str(error), 403)
        except NotFound:
            return problem(f"no queued or held message {queue_id}", 404)
        return await stream(request, found, {})

    async def act(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return problem("the body is not JSON", 400)
        if not isinstance(body, dict):
            return problem('expected {"operation": …, "ids": […]}', 400)
        operation, ids = body.get("operation"), body.get("ids")
        if not isinstance(operation, str) or not isinstance(ids, list):
            return problem('expected {"operation": …, "ids": […]}', 400)
        if not all(isinstance(each, str) for each in ids):
            return problem("ids: expected queue IDs (strings)", 400)
        try:
            result = await self._context.service.act(
                principal(request), operation, ids, client(request)
            )
        except Forbidden as error:
            return problem(str(error), 403)
        except ValueError as error:
            return problem(str(error), 400)
        return web.json_response(result)

    async def test_message(self, request: web.Request) -> web.Response:
        who = principal(request)
        if not who.may_act:
            log.warning(
                "console_refused", user=who.who, reason="viewer role", client=client(request)
            )
            return problem("your role (viewer) may look but not send", 403)
        try:
            body = await request.json()
        except ValueError:
            return problem("the body is not JSON", 400)
        sender = body.get("sender") if isinstance(body, dict) else None
        recipient = body.get("recipient") if isinstance(body, dict) else None
        if not isinstance(sender, str) or not isinstance(recipient, str):
            return problem('expected {"sender": …, "recipient": …}', 400)
        try:
            queue_id = await self._context.testmail.send(who, sender, recipient, client(request))
        except TestMailRefused as error:
            return problem(str(error), 400)
        except SpoolError as error:
            return problem(f"the queue cannot take it: {error}", 503)
        return web.json_response({"queue_id": queue_id})
