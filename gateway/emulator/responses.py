"""Response shapes of the two services the emulator imitates.

Graph: every answer carries `request-id` and `client-request-id` headers (the latter echoes the
client's header when it sent one), and every error is
`{"error": {"code", "message", "innerError": {"request-id", "date", "client-request-id"}}}`.
Entra: OAuth errors `{"error", "error_description": "AADSTSnnnn: …", "error_codes", "timestamp",
"trace_id", "correlation_id", "error_uri"}`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

REQUEST_ID = web.RequestKey("emulator.request_id", str)
CLIENT_REQUEST_ID = web.RequestKey("emulator.client_request_id", str)


def graph_ids(request: web.Request) -> tuple[str, str]:
    """This request's (request-id, client-request-id), assigned once per request."""
    if REQUEST_ID not in request:
        request[REQUEST_ID] = str(uuid.uuid4())
        request[CLIENT_REQUEST_ID] = request.headers.get("client-request-id") or str(uuid.uuid4())
    return request[REQUEST_ID], request[CLIENT_REQUEST_ID]


def stamp(request: web.Request, response: web.StreamResponse) -> None:
    """Add Graph's correlation headers to `response`."""
    request_id, client_request_id = graph_ids(request)
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id


def graph_json(
    request: web.Request,
    status: int,
    body: Mapping[str, Any],
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        charset="utf-8",
        headers=dict(headers or {}),
    )
    stamp(request, response)
    return response


def graph_empty(
    request: web.Request, status: int, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    response = web.Response(status=status, headers=dict(headers or {}))
    stamp(request, response)
    return response


def graph_error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    request_id, client_request_id = graph_ids(request)
    body: dict[str, Any] = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    body.update(extra or {})
    return graph_json(request, status, body, headers=headers)


def entra_error(status: int, error: str, code: int, text: str, *, base_url: str) -> web.Response:
    """An Entra ID OAuth error response."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    body = {
        "error": error,
        "error_description": (
            f"AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {now}"
        ),
        "error_codes": [code],
        "timestamp": now,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"{base_url}/error?code={code}",
    }
    return web.json_response(
        body, status=status, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
    )


def odata_timestamp(moment: dt.datetime) -> str:
    """Graph's DateTimeOffset rendering with seven fractional digits, e.g. …30.7671707Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
