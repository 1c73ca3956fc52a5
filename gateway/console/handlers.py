"""The console's HTML routes: sign-in and sign-out, overview, queue, confirmation, actions,
one message and its raw download.

Reading pages are for every signed-in role; the confirmation, the action and the download are
for operators. The data comes from `ConsoleService`, the same calls the JSON API makes.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import structlog
from aiohttp import web

from gateway.console import pages
from gateway.console.auth import SignInRefused
from gateway.console.context import (
    SECURITY_HEADERS,
    Context,
    client,
    local_path,
    principal,
    see_other,
)
from gateway.console.filters import FilterError, parse_filter
from gateway.console.layout import STYLESHEET, frame
from gateway.console.service import MAX_BULK, OPERATIONS, Forbidden, NotFound
from gateway.console.testmail import TestMailRefused
from gateway.errors import SpoolError

log = structlog.get_logger("gateway.console")
_TOKEN_LENGTH = len(secrets.token_urlsafe(32))


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


class Pages:
    """The HTML routes."""

    def __init__(self, context: Context) -> None:
        self._context = context

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/console.css", self.stylesheet),
            web.get("/signin", self.signin_form),
            web.post("/signin", self.signin),
            web.post("/signout", self.signout),
            web.get("/signin/once", self.signin_once),
            web.get("/", self.overview),
            web.get("/queue", self.queue),
            web.get("/devices", self.devices),
            web.post("/queue/confirm", self.confirm),
            web.post("/queue/act", self.act),
            web.get("/test-message", self.test_form),
            web.post("/test-message", self.test_send),
            web.get("/messages/{queue_id}", self.message),
            web.get("/messages/{queue_id}/raw", self.raw),
        ]

    def _page(self, request: web.Request, title: str, body: str, **kwargs: object) -> str:
        who = principal(request)
        session = who.session
        notice = ""
        if session is not None and session.notice:
            notice, session.notice = session.notice, ""
        return frame(
            title,
            body,
            user=who.name,
            role=who.role,
            csrf=session.csrf if session else "",
            notice=str(kwargs.get("notice") or notice),
            error=str(kwargs.get("error") or ""),
            refresh=int(str(kwargs.get("refresh") or 0)),
            refresh_to=request.path + "?auto=1",
        )

    def _refused(self, request: web.Request, text: str, status: int) -> web.Response:
        title = {403: "Not allowed", 404: "Not found"}.get(status, "Cannot do that")
        return html(self._page(request, title, pages.problem(text), error=text), status)

    async def stylesheet(self, _request: web.Request) -> web.Response:
        return web.Response(text=STYLESHEET, content_type="text/css")

    # -- signing in and out --------------------------------------------------------------------

    def _signin_page(
        self, request: web.Request, error: str = "", next_path: str = "/", status: int = 200
    ) -> web.Response:
        # Double-submit token: a form posted from another site cannot know the cookie's value.
        # A browser keeps its token across sign-in pages (other tabs, the favicon's redirect).
        token = request.cookies.get(self._context.signin_cookie, "")
        if len(token) != _TOKEN_LENGTH:
            token = secrets.token_urlsafe(32)
        microsoft = self._context.microsoft is not None
        form = pages.signin(token, error, next_path, microsoft=microsoft)
        page = frame("Sign in", form, error=error)
        response = html(page, status)
        self._context.set_cookie(response, self._context.signin_cookie, token)
        return response

    async def signin_form(self, request: web.Request) -> web.Response:
        return self._signin_page(request, next_path=local_path(request.query.get("next", "/")))

    async def signin(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        expected = request.cookies.get(self._context.signin_cookie, "")
        presented = str(form.get("csrf", ""))
        next_path = local_path(str(form.get("next", "/")))
        if not expected or not secrets.compare_digest(expected, presented):
            return self._signin_page(
                request, "the form expired; please sign in again", next_path, 403
            )
        username = str(form.get("username", ""))[:200]
        address = client(request)
        try:
            session = await self._context.auth.sign_in(
                username, str(form.get("password", ""))[:1024], address
            )
        except SignInRefused as refusal:
            log.warning("console_signin_failed", user=username, client=address, reason=str(refusal))
            return self._signin_page(request, str(refusal), next_path, 401)
        # A new session ID at every sign-in; whatever ID the browser had is ended.
        self._context.auth.sessions.end(request.cookies.get(self._context.session_cookie))
        log.info("console_signin", user=session.username, role=session.role, client=address)
        response = see_other(next_path)
        self._context.set_cookie(response, self._context.session_cookie, session.id)
        self._context.clear_cookie(response, self._context.signin_cookie)
        return response

    async def signin_once(self, request: web.Request) -> web.StreamResponse:
        """A one-time sign-in link (the demo's): a session, and the link is spent."""
        address = client(request)
        session = self._context.auth.use_once(request.query.get("token", "")[:100])
        if session is None:
            log.warning(
                "console_signin_failed",
                via="one-time link",
                client=address,
                reason="the link was used already, or is not one this console made",
            )
            return self._signin_page(
                request,
                "that sign-in link was used already, or is unknown: sign in below",
                status=401,
            )
        self._context.auth.sessions.end(request.cookies.get(self._context.session_cookie))
        log.info(
            "console_signin",
            user=session.username,
            role=session.role,
            via="one-time link",
            client=address,
        )
        response = see_other("/")
        self._context.set_cookie(response, self._context.session_cookie, session.id)
        return response

    async def signout(self, request: web.Request) -> web.StreamResponse:
        who = principal(request)
        self._context.auth.sessions.end(request.cookies.get(self._context.session_cookie))
        log.info("console_signout", user=who.who, client=client(request))
        response = see_other("/signin")
        self._context.clear_cookie(response, self._context.session_cookie)
        return response

    # -- reading -------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        data = await self._context.service.overview()
        # It loads itself again every 10 s: mail can be watched arriving, with no script.
        return html(self._page(request, "Overview", pages.overview(data), refresh=10))

    async def devices(self, request: web.Request) -> web.Response:
        data = self._context.service.devices()
        return html(self._page(request, "Devices", pages.devices(data)))

    async def queue(self, request: web.Request) -> web.Response:
        try:
            where = parse_filter(request.query)
        except FilterError as error:
            where = parse_filter({})
            data = await self._context.service.messages(where)
            body = pages.queue(data, where, self._context.tenant_names(), csrf="", may_act=False)
            return html(self._page(request, "Queue", body, error=str(error)), 400)
        who = principal(request)
        data = await self._context.service.messages(where)
        body = pages.queue(
            data,
            where,
            self._context.tenant_names(),
            csrf=who.session.csrf if who.session else "",
            may_act=who.may_act,
        )
        return html(self._page(request, "Queue", body))

    async def message(self, request: web.Request) -> web.Response:
        queue_id = request.match_info["queue_id"]
        try:
            data = await self._context.service.message(queue_id)
        except NotFound:
            return self._refused(request, f"no message {queue_id} in the queue", 404)
        who = principal(request)
        csrf = who.session.csrf if who.session else ""
        body = pages.message(data, csrf=csrf, may_act=who.may_act)
        # While it waits or is being sent the page loads itself again: delivery can be watched.
        watching = 5 if data["state"] in ("queued", "sending") else 0
        return html(self._page(request, f"Message {queue_id}", body, refresh=watching))

    async def raw(self, request: web.Request) -> web.StreamResponse:
        queue_id = request.match_info["queue_id"]
        try:
            found = await self._context.service.raw(principal(request), queue_id, client(request))
        except Forbidden as error:
            return self._refused(request, str(error), 403)
        except NotFound:
            return self._refused(request, f"no queued or held message {queue_id}", 404)
        disposition = f'attachment; filename="{queue_id}.eml"'
        return await stream(request, found, {"Content-Disposition": disposition})

    # -- acting --------------------------------------------------------------------------------

    def _operator(self, request: web.Request) -> web.Response | None:
        """None for an operator; the refusal page for anyone else."""
        who = principal(request)
        if who.may_act:
            return None
        log.warning("console_refused", user=who.who, reason="viewer role", client=client(request))
        return self._refused(request, "your role (viewer) may look but not change the queue", 403)

    async def test_form(self, request: web.Request) -> web.Response:
        refusal = self._operator(request)
        if refusal is not None:
            return refusal
        session = principal(request).session
        body = pages.test_form(session.csrf if session else "")
        return html(self._page(request, "Send a test message", body))

    async def test_send(self, request: web.Request) -> web.StreamResponse:
        refusal = self._operator(request)
        if refusal is not None:
            return refusal
        form = await request.post()
        sender, recipient = (
            str(form.get("sender", "")).strip(),
            str(form.get("recipient", "")).strip(),
        )
        try:
            queue_id = await self._context.testmail.send(
                principal(request), sender, recipient, client(request)
            )
        except TestMailRefused as error:
            session = principal(request).session
            body = pages.test_form(session.csrf if session else "", sender, recipient)
            page = self._page(request, "Send a test message", body, error=str(error))
            return html(page, 400)
        except SpoolError as error:
            return self._refused(request, f"the queue cannot take it: {error}", 503)
        return see_other(f"/messages/{queue_id}")

    async def _action(self, request: web.Request) -> tuple[str, list[str], str] | web.Response:
        """The operation, message IDs and page to return to from an action form."""
        refusal = self._operator(request)
        if refusal is not None:
            return refusal
        form = await request.post()
        operation = str(form.get("operation", ""))
        ids = [str(value) for value in form.getall("id", [])]
        back = local_path(str(form.get("back", "/queue")), "/queue")
        if operation not in OPERATIONS:
            return self._refused(request, f"no operation {operation!r}", 400)
        if not ids or len(ids) > MAX_BULK:
            return self._refused(request, f"select from 1 to {MAX_BULK} messages first", 400)
        return operation, ids, back

    async def confirm(self, request: web.Request) -> web.Response:
        found = await self._action(request)
        if isinstance(found, web.Response):
            return found
        operation, ids, back = found
        session = principal(request).session
        body = pages.confirm(operation, ids, csrf=session.csrf if session else "", back=back)
        return html(self._page(request, "Confirm", body))

    async def act(self, request: web.Request) -> web.StreamResponse:
        found = await self._action(request)
        if isinstance(found, web.Response):
            return found
        operation, ids, back = found
        who = principal(request)
        result = await self._context.service.act(who, operation, ids, client(request))
        words = [f"{operation}: {len(result['done'])} done"]
        words += [f"{qid}: {why}" for qid, why in result["refused"].items()]
        if who.session is not None:
            who.session.notice = "; ".join(words)
        if operation == "delete" and back.startswith("/messages/"):
            back = "/queue"
        return see_other(back)


def signin_redirect(path: str) -> web.Response:
    """Where an unauthenticated page request is sent."""
    return see_other("/signin?" + urlencode({"next": path}))


async def stream(
    request: web.Request, found: tuple[int, AsyncIterator[bytes]], headers: dict[str, str]
) -> web.StreamResponse:
    """Send a raw message piece by piece (pages and the API alike)."""
    size, pieces = found
    response = web.StreamResponse(headers={"Content-Type": "message/rfc822", **headers})
    response.content_length = size
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    await response.prepare(request)
    async for piece in pieces:
        await response.write(piece)
    await response.write_eof()
    return response
