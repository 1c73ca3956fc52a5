"""Graph mail routes under `/v1.0`: the request pipeline and the dispatcher.

Every Graph request (and upload-URL request) passes the middleware: correlation ids, per-mailbox
concurrency accounting, injected latency and faults, then statistics. The dispatcher matches
path segments case-insensitively (Graph does), reads the body under the 4 MB request limit,
authenticates, resolves the mailbox and checks the permission before calling the handler:

    POST   /users/{id}/sendMail | /me/sendMail                    Mail.Send (sendmail.py)
    POST   /users/{id}/messages                                   Mail.ReadWrite (drafts.py)
    GET    /users/{id}/messages/{mid}   DELETE …                  Mail.ReadWrite
    POST   /users/{id}/messages/{mid}/attachments                 Mail.ReadWrite
    POST   …/attachments/createUploadSession                      Mail.ReadWrite
    POST   /users/{id}/messages/{mid}/send                        Mail.Send

`/me` needs a delegated token and means its user; with a delegated token `/users/{id}` must be
the signed-in user (UPN or object id), else 403 `ErrorAccessDenied`.
A body over the limit is answered 413 `RequestEntityTooLarge` "The maximum request length
supported is 4MB." (the status third parties report from sendMail; the gateway keys on 413).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from gateway.emulator import drafts
from gateway.emulator.auth import (
    ACCESS_DENIED,
    AuthFailure,
    Caller,
    authenticate,
    require,
    token_user,
)
from gateway.emulator.bodies import BodyTooLarge, discard_body, read_body
from gateway.emulator.context import GraphContext, GraphFailure
from gateway.emulator.faults import InjectedError
from gateway.emulator.responses import graph_error, graph_ids, stamp
from gateway.emulator.schema import SchemaError
from gateway.emulator.sendmail import send_mail
from gateway.emulator.state import EmulatorState
from gateway.emulator.stats import RequestRecord
from gateway.emulator.uploads import UPLOAD_PREFIX, session_mailbox

Handler = Callable[[GraphContext], Awaitable[web.Response]]
TOO_LARGE = "The maximum request length supported is 4MB."


@dataclass(frozen=True)
class Route:
    method: str
    permission: str
    handler: Handler


# Route shapes (after `users/{id}` or `me`, lowercased) → the routes for each method.
ROUTES: dict[str, list[Route]] = {
    "sendmail": [Route("POST", "Mail.Send", send_mail)],
    "messages": [Route("POST", "Mail.ReadWrite", drafts.create_draft)],
    "messages/{id}": [
        Route("GET", "Mail.ReadWrite", drafts.get_draft),
        Route("DELETE", "Mail.ReadWrite", drafts.delete_draft),
    ],
    "messages/{id}/attachments": [Route("POST", "Mail.ReadWrite", drafts.add_attachment)],
    "messages/{id}/attachments/createuploadsession": [
        Route("POST", "Mail.ReadWrite", drafts.create_upload_session)
    ],
    "messages/{id}/send": [Route("POST", "Mail.Send", drafts.send_draft)],
}


class GraphRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/v1.0/{tail:.*}", self.dispatch)

    async def dispatch(self, request: web.Request) -> web.Response:
        response = await self._answer(request)
        await discard_body(request)  # an early error must not reset a client still sending
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        segments = [s for s in request.match_info["tail"].split("/") if s]
        try:
            owner, shape, message_id = _parse_path(segments)
            route = _route_for(request, shape)
            try:
                body = await read_body(request, self.state.settings.max_request_size)
            except BodyTooLarge:
                raise GraphFailure(413, "RequestEntityTooLarge", TOO_LARGE) from None
            caller = authenticate(self.state, request)
            mailbox = self._mailbox(owner, caller)
            require(caller, route.permission)
            injected = self.state.faults.mailbox_error(mailbox, sending=False)
            if injected is not None:
                raise GraphFailure.from_injected(injected)
            context = GraphContext(self.state, request, caller, mailbox, body, message_id)
            return await route.handler(context)
        except AuthFailure as exc:
            headers = {}
            if exc.status == 401:
                headers["WWW-Authenticate"] = (
                    f'Bearer realm="", authorization_uri="{self.state.base_url}/common/oauth2/'
                    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
                )
            return graph_error(request, exc.status, exc.code, exc.message, headers=headers)
        except GraphFailure as exc:
            return graph_error(request, exc.status, exc.code, exc.message)
        except SchemaError as exc:
            return graph_error(request, 400, exc.code, exc.message)

    @staticmethod
    def _mailbox(owner: str | None, caller: Caller) -> str:
        user = caller.user
        if caller.is_app:
            if owner is None:
                raise GraphFailure(
                    400,
                    "BadRequest",
                    "/me request is only valid with delegated authentication flow.",
                )
            return owner.lower()
        if user is None:
            raise AuthFailure(401, "InvalidAuthenticationToken", "Access token validation failure.")
        if owner is None or owner.lower() in (user, caller.object_id.lower()):
            return user
        raise AuthFailure(403, "ErrorAccessDenied", ACCESS_DENIED)


def _parse_path(segments: list[str]) -> tuple[str | None, str, str | None]:
    """(mailbox from the URL or None for /me, route shape, message id) for a /v1.0 path."""
    if segments and segments[0].lower() == "me":
        owner, rest = None, segments[1:]
    elif len(segments) >= 2 and segments[0].lower() == "users":
        owner, rest = segments[1], segments[2:]
    else:
        raise _not_found(segments[0] if segments else "v1.0")
    names = [s.lower().removeprefix("microsoft.graph.") for s in rest]
    message_id = None
    if len(names) >= 2 and names[0] == "messages":
        message_id = rest[1]
        names[1] = "{id}"
    shape = "/".join(names)
    if shape in ROUTES:
        return owner, shape, message_id
    for index in range(len(names)):  # name the first segment no route continues with
        prefix = "/".join(names[: index + 1])
        if not any(s == prefix or s.startswith(prefix + "/") for s in ROUTES):
            raise _not_found(rest[index])
    raise _not_found(segments[-1])


def _route_for(request: web.Request, shape: str) -> Route:
    route = next((r for r in ROUTES[shape] if r.method == request.method), None)
    if route is None:
        raise GraphFailure(
            405, "Request_BadRequest", f"The method '{request.method}' is not allowed."
        )
    return route


def _not_found(segment: str) -> GraphFailure:
    return GraphFailure(400, "BadRequest", f"Resource not found for the segment '{segment}'.")


def graph_middleware(state: EmulatorState) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Correlation ids, concurrency accounting, latency, request faults and statistics."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        is_upload = path.startswith(UPLOAD_PREFIX)
        if not (path.startswith("/v1.0/") or is_upload):
            return await handler(request)
        graph_ids(request)
        mailbox = session_mailbox(state, path) if is_upload else _path_mailbox(request)
        in_flight = state.stats.enter(mailbox)
        try:
            if state.faults.faults.latency_ms:
                await asyncio.sleep(state.faults.faults.latency_ms / 1000)
            injected = state.faults.request_fault(now=state.clock(), in_flight=in_flight)
            if injected is not None:
                await discard_body(request)
                response: web.StreamResponse = _injected_response(request, injected)
            else:
                response = await handler(request)
        except ConnectionResetError:
            # The client went away mid-request (a killed gateway): nothing to answer.
            state.log.info("emulator.client_gone", method=request.method, path=path)
            raise
        except Exception:
            state.log.exception("emulator.handler_failed", method=request.method, path=path)
            response = graph_error(
                request, 500, "InternalServerError", "An internal server error occurred."
            )
        finally:
            state.stats.leave(mailbox)
        stamp(request, response)
        state.stats.record(
            RequestRecord(state.clock(), request.method, path, mailbox, response.status)
        )
        return response

    return middleware


def _injected_response(request: web.Request, injected: InjectedError) -> web.Response:
    headers = {}
    if injected.retry_after is not None:
        headers["Retry-After"] = str(injected.retry_after)
    return graph_error(request, injected.status, injected.code, injected.message, headers=headers)


def _path_mailbox(request: web.Request) -> str | None:
    segments = [s for s in request.path.split("/") if s]
    if len(segments) >= 3 and segments[1].lower() == "users":
        return segments[2].lower()
    if len(segments) >= 2 and segments[1].lower() == "me":
        return token_user(request)
    return None
