"""The console's JSON API against its own OpenAPI document, property-based (hypothesis): for
any query, ID and action body the documented parameters allow (and many they do not), a
running gateway answers with a documented status and a body that fits the documented schema,
and never with a 500."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.emulator import Emulator, Faults
from tests.support.console import TOKENS, console_section
from tests.support.gateway import config_document, write_config
from tests.support.process import GatewayProcess

OPERATOR = {"Authorization": f"Bearer {TOKENS['ops-script']}"}
_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


_GET = object()


def request(base: str, path: str, body: Any = _GET) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request with the operator's token: a GET, or a
    POST of `body` as JSON."""
    data = None if body is _GET else json.dumps(body).encode()
    headers = {**OPERATOR, **({"Content-Type": "application/json"} if data else {})}
    call = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=20) as response:
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read()


def inline(schema: Any, document: dict[str, Any]) -> Any:
    """The schema with its `#/components/...` references replaced by what they name."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            target: Any = document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return inline(target, document)
        return {key: inline(value, document) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inline(item, document) for item in schema]
    return schema


def check(document: dict[str, Any], path: str, method: str, answer: tuple[int, str, bytes]) -> None:
    status, kind, body = answer
    responses = document["paths"][path][method]["responses"]
    assert str(status) in responses, (path, status, body[:200])
    content = responses[str(status)].get("content", {})
    assert kind in content, (path, status, kind)
    if kind == "application/json":
        jsonschema.validate(json.loads(body), inline(content[kind]["schema"], document))


def parameter(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """Values a parameter's schema allows, and junk."""
    allowed: st.SearchStrategy[str]
    if "enum" in schema:
        allowed = st.sampled_from([str(v) for v in schema["enum"]])
    elif schema.get("type") == "integer":
        allowed = st.integers(schema.get("minimum", -5), schema.get("maximum", 10_000)).map(str)
    elif "pattern" in schema:
        allowed = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        allowed = st.text(max_size=20)
    return st.one_of(allowed, st.text(max_size=12))


async def test_the_api_keeps_to_its_openapi_document(tmp_path: Path, emulator: Emulator) -> None:
    emulator.set_faults(Faults(outage_seconds=3600))
    document = config_document(
        tmp_path,
        emulator,
        console=console_section(),
        delivery={"retry_initial": "1h", "retry_max": "2h"},
    )
    gateway = await GatewayProcess.start(write_config(tmp_path, document))
    try:
        base = (await gateway.wait_for_event("console_started"))["url"].rstrip("/")
        port = (await gateway.wait_for_event("listening"))["port"]
        await asyncio.to_thread(_send, port)
        await gateway.wait_for_event("deferred")
        await asyncio.to_thread(_properties, base)
    finally:
        gateway.process.terminate()
        await gateway.wait_exit()


def _send(port: int) -> None:
    import smtplib  # noqa: PLC0415 - only here

    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("scanner@contoso.com", ["alice@contoso.com"], b"Subject: a\r\n\r\nx\r\n")


def _properties(base: str) -> None:
    status, _, raw = request(base, "/api/openapi.json")
    assert status == 200
    document = json.loads(raw)
    listing = document["paths"]["/api/v1/messages"]["get"]
    names = [p["name"] for p in listing["parameters"]]
    _, _, body = request(base, "/api/v1/messages")
    known = [m["queue_id"] for m in json.loads(body)["messages"]]
    assert known

    for path in ("/api/v1/whoami", "/api/v1/overview", "/api/v1/devices"):
        check(document, path, "get", request(base, path))

    @_SETTINGS
    @given(
        st.fixed_dictionaries(
            {},
            optional={p["name"]: parameter(p["schema"]) for p in listing["parameters"]},
        )
    )
    def messages(query: dict[str, str]) -> None:
        assert set(query) <= set(names)
        answer = request(base, "/api/v1/messages?" + urlencode(query))
        check(document, "/api/v1/messages", "get", answer)

    @_SETTINGS
    @given(st.one_of(st.sampled_from(known), st.from_regex(r"[0-9A-F]{19}", fullmatch=True)))
    def message(queue_id: str) -> None:
        check(
            document,
            "/api/v1/messages/{queue_id}",
            "get",
            request(base, f"/api/v1/messages/{queue_id}"),
        )

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    )

    @_SETTINGS
    @given(
        st.one_of(
            st.fixed_dictionaries(
                {
                    # delete is left out: the known message must stay for the other examples
                    "operation": st.sampled_from(["retry", "hold", "release", "purge", ""]),
                    "ids": st.lists(st.sampled_from([*known, "NOT-AN-ID"]), max_size=3),
                }
            ),
            json_values,
        )
    )
    def actions(body: Any) -> None:
        check(document, "/api/v1/actions", "post", request(base, "/api/v1/actions", body))

    messages()
    message()
    actions()
