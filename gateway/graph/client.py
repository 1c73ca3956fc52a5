"""The Graph HTTP client: one shared aiohttp session, one method per Graph call used.

It knows URLs, headers and Graph's error body; what an answer means for the message is decided
by `delivery.classify`. TLS trusts the tenant's `ca_file` when one is configured (the emulator
or a TLS-inspecting proxy), and the system store otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiohttp

from gateway.delivery.backoff import parse_retry_after


@dataclass(frozen=True, slots=True)
class GraphAnswer:
    """What Graph said to one request."""

    status: int
    code: str = ""
    message: str = ""
    request_id: str = ""
    retry_after: float | None = None
    duration: float = 0.0


class GraphTransportError(Exception):
    """No HTTP answer: connection failure or timeout. `sent` means the body went out."""

    def __init__(self, reason: str, *, sent: bool) -> None:
        self.reason = reason
        self.sent = sent
        super().__init__(reason)


class GraphClient:
    """Calls Graph with a shared `aiohttp.ClientSession`."""

    def __init__(self, session: aiohttp.ClientSession, *, timeout: float, proxy: str = "") -> None:
        self._configured_proxy = proxy
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._contexts: dict[Path | None, ssl.SSLContext] = {}
        self._proxies: dict[str, str | None] = {}

    def _proxy(self, url: str) -> str | None:
        """HTTPS_PROXY/NO_PROXY from the environment, looked up once per host.

        (aiohttp's own trust_env also reads ~/.netrc on every request; this does not.)
        """
        if self._configured_proxy:
            return self._configured_proxy
        host = urlsplit(url).hostname or ""
        if host not in self._proxies:
            proxy = urllib.request.getproxies().get("https")
            self._proxies[host] = None if not proxy or urllib.request.proxy_bypass(host) else proxy
        return self._proxies[host]

    def prepare(self, ca_files: Iterable[Path | None]) -> None:
        """Build the TLS contexts ahead (blocking: loading CA files takes tens of ms), so no
        Graph request builds one on the event loop."""
        for ca_file in ca_files:
            self._ssl(ca_file)

    def _ssl(self, ca_file: Path | None) -> ssl.SSLContext:
        context = self._contexts.get(ca_file)
        if context is None:
            context = ssl.create_default_context()
            if ca_file is not None:
                context.load_verify_locations(cafile=str(ca_file))
            self._contexts[ca_file] = context
        return context

    async def send_mime(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        message: bytes,
        token: str,
        ca_file: Path | None = None,
    ) -> GraphAnswer:
        """POST the message as base64 MIME to `/users/{mailbox}/sendMail`."""
        url = f"{graph_endpoint.rstrip('/')}/users/{quote(mailbox, safe='@')}/sendMail"
        body = base64.b64encode(message)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        return await self._post(url, body, headers, ca_file)

    async def send_json(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        payload: dict[str, object],
        token: str,
        ca_file: Path | None = None,
    ) -> GraphAnswer:
        """POST a JSON sendMail request (used by `check` to probe a mailbox)."""
        url = f"{graph_endpoint.rstrip('/')}/users/{quote(mailbox, safe='@')}/sendMail"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return await self._post(url, json.dumps(payload).encode(), headers, ca_file)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], ca_file: Path | None
    ) -> GraphAnswer:
        started = time.monotonic()
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                ssl=self._ssl(ca_file),
                proxy=self._proxy(url),
            ) as response:
                payload = await response.read()
                return _answer(response, payload, time.monotonic() - started)
        except TimeoutError:
            raise GraphTransportError("Graph did not answer in time", sent=True) from None
        except aiohttp.ClientConnectorError as error:
            raise GraphTransportError(
                f"cannot connect to Graph: {error.os_error}", sent=False
            ) from None
        except aiohttp.ClientError as error:
            # Past connecting we cannot know whether Graph saw the request: ambiguous.
            raise GraphTransportError(
                f"connection to Graph failed: {type(error).__name__}", sent=True
            ) from None


def _answer(response: aiohttp.ClientResponse, payload: bytes, duration: float) -> GraphAnswer:
    code = message = ""
    request_id = response.headers.get("request-id", "")
    if payload and response.content_type == "application/json":
        try:
            error = json.loads(payload).get("error", {})
            code = str(error.get("code", ""))
            message = str(error.get("message", ""))
            inner = error.get("innerError") or {}
            request_id = request_id or str(inner.get("request-id", ""))
        except (ValueError, AttributeError):
            pass
    return GraphAnswer(
        status=response.status,
        code=code,
        message=message[:500],
        request_id=request_id,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), time.time()),
        duration=duration,
    )


@contextlib.asynccontextmanager
async def open_graph_client(*, timeout: float, proxy: str = "") -> AsyncIterator[GraphClient]:
    """A Graph client with a session of its own, for one-off commands such as `check`."""
    async with aiohttp.ClientSession() as session:
        yield GraphClient(session, timeout=timeout, proxy=proxy)
