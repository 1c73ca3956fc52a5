"""The emulator's own control endpoints under `/_emulator/` (HTTPS like the rest, no auth).

- `GET /_emulator/outbox`: delivered messages' metadata, in delivery order;
- `GET /_emulator/outbox/{id}.eml`: one delivered message as RFC 5322 bytes;
- `GET /_emulator/faults`: the active faults and what is left of their countdowns;
- `PUT /_emulator/faults`: replace the faults with the JSON object given;
- `GET /_emulator/stats`: request counters (see stats.py);
- `POST /_emulator/reset`: clear outbox, drafts, statistics and faults.
"""

from __future__ import annotations

import json

from aiohttp import web

from gateway.emulator.faults import Faults
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
