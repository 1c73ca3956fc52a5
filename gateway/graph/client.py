"""The Graph HTTP client: one shared aiohttp session, one method per Graph call used.

It knows URLs, headers and Graph's error body; what an answer means for the message is decided
by `graph.classify`. TLS trusts the tenant's `ca_file` when one is configured (the emulator
or a TLS-inspecting proxy), and the system store otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from gateway.graph.classify import parse_retry_after
from gateway.network import unreachable
from gateway.transport import Answer, TransportError

_STREAMED = 1024 * 1024  # request bodies above this are streamed


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

    @staticmethod
    def _users(graph_endpoint: str, mailbox: str) -> str:
        """`/users/{mailbox}`, or `/me` for "" (the signed-in user of a delegated token)."""
        if not mailbox:
            return f"{graph_endpoint.rstrip('/')}/me"
        return f"{graph_endpoint.rstrip('/')}/users/{quote(mailbox, safe='@')}"

    async def send_mime(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        message: bytes,
        token: str,
        ca_file: Path | None = None,
    ) -> Answer:
        """POST the message as base64 MIME to `/users/{mailbox}/sendMail`."""
        url = f"{self._users(graph_endpoint, mailbox)}/sendMail"
        body = base64.b64encode(message)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
        answer, _document = await self._request("POST", url, body, headers, ca_file)
        return answer

    async def send_json(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        payload: dict[str, object],
        token: str,
        ca_file: Path | None = None,
    ) -> Answer:
        """POST a JSON sendMail request (`{"message": …, "saveToSentItems": …}`)."""
        url = f"{self._users(graph_endpoint, mailbox)}/sendMail"
        answer, _document = await self._json("POST", url, payload, token, ca_file)
        return answer

    async def create_draft(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        message: dict[str, Any],
        token: str,
        ca_file: Path | None = None,
    ) -> tuple[Answer, str]:
        """POST a draft to `/users/{mailbox}/messages`; (answer, the draft's id or "")."""
        url = f"{self._users(graph_endpoint, mailbox)}/messages"
        answer, document = await self._json("POST", url, message, token, ca_file)
        return answer, str(document.get("id", "")) if answer.status == 201 else ""

    async def add_attachment(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        draft: str,
        attachment: dict[str, Any],
        token: str,
        ca_file: Path | None = None,
    ) -> Answer:
        """POST one attachment (under 3 MB) to a draft."""
        url = f"{self._users(graph_endpoint, mailbox)}/messages/{quote(draft, safe='')}/attachments"
        answer, _document = await self._json("POST", url, attachment, token, ca_file)
        return answer

    async def create_upload_session(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        draft: str,
        item: dict[str, Any],
        token: str,
        ca_file: Path | None = None,
    ) -> tuple[Answer, str]:
        """Open an upload session for one large attachment; (answer, its uploadUrl or "")."""
        url = (
            f"{self._users(graph_endpoint, mailbox)}/messages/{quote(draft, safe='')}"
            "/attachments/createUploadSession"
        )
        answer, document = await self._json("POST", url, {"AttachmentItem": item}, token, ca_file)
        upload_url = document.get("uploadUrl", "") if answer.status in (200, 201) else ""
        return answer, str(upload_url)

    async def upload_chunk(
        self,
        *,
        upload_url: str,
        chunk: bytes,
        start: int,
        total: int,
        ca_file: Path | None = None,
    ) -> tuple[Answer, int | None]:
        """PUT bytes `start…` of an attachment to its pre-authenticated upload URL (which must
        get no Authorization header); (answer, the next offset Graph expects, None when the
        upload is complete or Graph did not say)."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}",
        }
        answer, document = await self._request("PUT", upload_url, chunk, headers, ca_file)
        return answer, _next_expected(document)

    async def upload_status(
        self, *, upload_url: str, ca_file: Path | None = None
    ) -> tuple[Answer, int | None]:
        """Ask an upload session where to go on (after a chunk that got no clear answer)."""
        answer, document = await self._request("GET", upload_url, b"", {}, ca_file)
        return answer, _next_expected(document)

    async def send_draft(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        draft: str,
        token: str,
        ca_file: Path | None = None,
    ) -> Answer:
        """POST `/messages/{id}/send` (an empty body with `Content-Length: 0`)."""
        url = f"{self._users(graph_endpoint, mailbox)}/messages/{quote(draft, safe='')}/send"
        headers = {"Authorization": f"Bearer {token}", "Content-Length": "0"}
        answer, _document = await self._request("POST", url, b"", headers, ca_file)
        return answer

    async def delete_message(
        self,
        *,
        graph_endpoint: str,
        mailbox: str,
        draft: str,
        token: str,
        ca_file: Path | None = None,
    ) -> Answer:
        """DELETE a draft (one left behind by a failed large-message delivery)."""
        url = f"{self._users(graph_endpoint, mailbox)}/messages/{quote(draft, safe='')}"
        headers = {"Authorization": f"Bearer {token}"}
        answer, _document = await self._request("DELETE", url, b"", headers, ca_file)
        return answer

    async def _json(
        self, method: str, url: str, payload: dict[str, Any], token: str, ca_file: Path | None
    ) -> tuple[Answer, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return await self._request(method, url, body, headers, ca_file)

    async def _request(
        self, method: str, url: str, body: bytes, headers: dict[str, str], ca_file: Path | None
    ) -> tuple[Answer, dict[str, Any]]:
        started = time.monotonic()
        # Large bodies go as a stream that yields to the event loop between 64 KiB pieces,
        # so a 4 MB request does not hold up SMTP clients waiting for their 250.
        data: bytes | io.BytesIO = io.BytesIO(body) if len(body) > _STREAMED else body
        try:
            async with self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=self._timeout,
                ssl=self._ssl(ca_file),
                proxy=self._proxy(url),
            ) as response:
                payload = await response.read()
                return _answer(response, payload, time.monotonic() - started)
        except TimeoutError:
            host = urlsplit(url).netloc
            raise TransportError(
                f"Graph ({host}) did not answer within {self._timeout.total:g}s", sent=True
            ) from None
        except aiohttp.ClientConnectorError as error:
            # The host, the real cause (certificate verification, DNS, refused) and what to
            # check (ca_file, proxy, the firewall).
            reason = unreachable(error, url, proxy=self._proxy(url) or "")
            raise TransportError(reason, sent=False) from None
        except aiohttp.ClientError as error:
            # Past connecting we cannot know whether Graph saw the request: ambiguous.
            cause = str(error).splitlines()[0][:200] if str(error) else ""
            raise TransportError(
                f"the connection to Graph ({urlsplit(url).netloc}) failed after the request was "
                f"sent: {type(error).__name__}{': ' + cause if cause else ''}",
                sent=True,
            ) from None


def _next_expected(document: dict[str, Any]) -> int | None:
    """The first offset of `nextExpectedRanges` (["3932160-"] or Outlook's ["3932160"])."""
    ranges = document.get("nextExpectedRanges") or document.get("NextExpectedRanges")
    if not isinstance(ranges, list) or not ranges:
        return None
    first = str(ranges[0]).split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _answer(
    response: aiohttp.ClientResponse, payload: bytes, duration: float
) -> tuple[Answer, dict[str, Any]]:
    code = message = ""
    request_id = response.headers.get("request-id", "")
    document: dict[str, Any] = {}
    if payload and response.content_type == "application/json":
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            document = parsed
            error = parsed.get("error")
            if isinstance(error, dict):
                code = str(error.get("code", ""))
                message = str(error.get("message", ""))
                inner = error.get("innerError") or {}
                if isinstance(inner, dict):
                    request_id = request_id or str(inner.get("request-id", ""))
    answer = Answer(
        status=response.status,
        code=code,
        message=message[:500],
        request_id=request_id,
        retry_after=parse_retry_after(response.headers.get("Retry-After"), time.time()),
        duration=duration,
    )
    return answer, document


@contextlib.asynccontextmanager
async def open_graph_client(*, timeout: float, proxy: str = "") -> AsyncIterator[GraphClient]:
    """A Graph client with a session of its own, for one-off commands such as `check`."""
    async with aiohttp.ClientSession() as session:
        yield GraphClient(session, timeout=timeout, proxy=proxy)
