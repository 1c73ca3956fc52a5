"""The emulator's own control endpoints under `/_emulator/` (HTTPS like the rest, no auth).

- `GET /_emulator/outbox`: delivered messages' metadata, in delivery order;
- `GET /_emulator/outbox/{id}.eml`: one delivered message as RFC 5322 bytes;
- `GET /_emulator/faults`: the active faults and what is left of their countdowns;
- `PUT /_emulator/faults`: replace the faults with the JSON object given;
- `GET /_emulator/stats`: request counters (see stats.py);
- `POST /_emulator/reset`: clear outbox, drafts, pending sign-ins, statistics and faults;
- `GET /_emulator/users`: `{"open": bool, "users": [{username, tenant_id, display_name,
  object_id, msa}]}` (open: no users configured, any username signs in);
- `GET /_emulator/devicecodes`: device codes issued, `[{user_code, client_id, tenant, scope,
  status (pending|approved|declined|expired|redeemed), polls, expires_in, username}]`;
- `POST /_emulator/devicecodes/{user_code}/approve`, optional JSON `{"username": "…"}`: sign in
  as that user (default: the first user allowed in the flow's tenant); 404 unknown code, 409
  not pending, 400 user refused (with the AADSTS text);
- `POST /_emulator/devicecodes/{user_code}/decline`: the next poll gets authorization_declined;
- `POST /_emulator/devicecodes/{user_code}/expire`: the next poll gets expired_token;
- `POST /_emulator/users/{username}/revoke`, optional JSON `{"client_id": "…"}`: revoke the
  user's refresh tokens (of that client only, if given) → `{"username", "client_id",
  "revoked"}`; redeeming one then fails with invalid_grant AADSTS50173;
- `POST /_emulator/oidc/{name}/token`: a service-account token of a test issuer (oidc.py).

Errors are `{"error": "…"}` with status 400, 404 or 409.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.emulator.faults import Faults
from gateway.emulator.signin import DeviceFlow, SignInRefused
from gateway.emulator.state import EmulatorState


class AdminRoutes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/_emulator/outbox", self.outbox)
        router.add_get("/_emulator/outbox/{name}", self.outbox_message)
        router.add_get("/_emulator/faults", self.get_faults)
        router.add_put("/_emulator/faults", self.put_faults)
        router.add_get("/_emulator/stats", self.stats)
        router.add_post("/_emulator/reset", self.reset)
        router.add_get("/_emulator/users", self.users)
        router.add_post("/_emulator/users/{username}/revoke", self.revoke)
        router.add_get("/_emulator/devicecodes", self.device_codes)
        router.add_post("/_emulator/devicecodes/{user_code}/{action}", self.device_code_action)

    async def outbox(self, request: web.Request) -> web.Response:
        return web.json_response([m.metadata() for m in self.state.outbox.messages()])

    async def outbox_message(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        message = self.state.outbox.get(name.removesuffix(".eml"))
        if message is None or not name.endswith(".eml"):
            raise web.HTTPNotFound(text=f"no delivered message {name}\n")
        return web.Response(body=message.mime, content_type="message/rfc822")

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.faults.to_json(now=self.state.clock()))

    async def put_faults(self, request: web.Request) -> web.Response:
        try:
            data = json.loads(await request.text())
        except ValueError as exc:
            return web.json_response({"error": f"invalid JSON: {exc}"}, status=400)
        if not isinstance(data, dict):
            return web.json_response({"error": "expected a JSON object of faults"}, status=400)
        try:
            faults = Faults.from_mapping(data)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.state.set_faults(faults)
        return web.json_response(self.state.faults.to_json(now=self.state.clock()))

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.stats.to_json())

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return web.Response(status=204)

    async def users(self, request: web.Request) -> web.Response:
        settings = self.state.settings
        return web.json_response(
            {"open": settings.open_users, "users": [u.to_json() for u in settings.users]}
        )

    async def revoke(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        client_id = body.get("client_id")
        if client_id is not None and not isinstance(client_id, str):
            return _error(400, "client_id must be a string")
        username = request.match_info["username"]
        count = self.state.signin.revoke(username, client_id, now=self.state.clock())
        self.state.log.info(
            "emulator.sign_ins_revoked", user=username, client_id=client_id, revoked=count
        )
        return web.json_response(
            {"username": username.lower(), "client_id": client_id, "revoked": count}
        )

    async def device_codes(self, request: web.Request) -> web.Response:
        now = self.state.clock()
        flows = self.state.signin.device_flows.values()
        return web.json_response([flow.to_json(now=now) for flow in flows])

    async def device_code_action(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        user_code, action = request.match_info["user_code"], request.match_info["action"]
        username = body.get("username")
        if username is not None and not isinstance(username, str):
            return _error(400, "username must be a string")
        signin, now = self.state.signin, self.state.clock()
        try:
            flow: DeviceFlow
            if action == "approve":
                flow = signin.approve(user_code, username, now=now)
            elif action == "decline":
                flow = signin.decline(user_code, now=now)
            elif action == "expire":
                flow = signin.expire(user_code)
            else:
                return _error(404, f"unknown action {action!r}: approve, decline or expire")
        except KeyError:
            return _error(404, f"no device code {user_code}")
        except SignInRefused as exc:
            return _error(400, f"AADSTS{exc.code}: {exc}")
        except ValueError as exc:
            return _error(409, str(exc))
        self.state.log.info("emulator.device_code_set", action=action, user_code=flow.user_code)
        return web.json_response(flow.to_json(now=now))


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request's JSON object body ({} when empty), or the 400 answer to give."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        return _error(400, f"invalid JSON: {exc}")
    if not isinstance(data, dict):
        return _error(400, "expected a JSON object")
    return data


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
