"""Network failures in an administrator's words: why a socket cannot be bound, why a host
cannot be reached, and what to change.

HTTP libraries wrap the real cause several layers deep (requests: `ConnectionError` →
urllib3's `MaxRetryError` → `NewConnectionError` → `ConnectionRefusedError`; aiohttp:
`ClientConnectorCertificateError` → `ssl.SSLCertVerificationError`), and their outer names
("SSLError", "ClientConnectorError") say nothing an administrator can act on. `unreachable`
digs out the cause (certificate verification and its reason, DNS, refused, timed out, reset)
and names the host and the setting to look at (`ca_file`, `proxy`, the firewall).
`bind_issue` does the same for a listening socket. Nothing here imports an HTTP library.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from urllib.parse import urlsplit

from gateway.errors import ConfigIssue

_CAUSES = (
    ssl.SSLCertVerificationError,
    ssl.SSLError,
    socket.gaierror,
    ConnectionRefusedError,
    ConnectionResetError,
    TimeoutError,
)


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause worth naming, searched through `__cause__`, `__context__`,
    exception arguments and the attributes urllib3 and aiohttp keep it in."""
    seen: set[int] = set()
    pending = [error]
    fallback: BaseException = error
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        # aiohttp's ClientConnectorCertificateError is itself an SSLCertVerificationError, a
        # wrapper without the reason: go on to the error it wraps.
        wraps = getattr(current, "certificate_error", None) or getattr(current, "os_error", None)
        if isinstance(current, _CAUSES) and not isinstance(wraps, BaseException):
            return current
        if isinstance(current, OSError) and current.errno is not None and fallback is error:
            fallback = current
        for name in ("certificate_error", "os_error", "reason", "__cause__", "__context__"):
            child = getattr(current, name, None)
            if isinstance(child, BaseException):
                pending.append(child)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return fallback


def _through_proxy(error: BaseException) -> bool:
    """Whether the failure was the connection to a proxy (requests' ProxyError, aiohttp's
    ClientProxyConnectionError), found by name so no HTTP library is imported here."""
    chain: list[BaseException] = [error]
    while chain:
        current = chain.pop()
        if any("Proxy" in cls.__name__ for cls in type(current).__mro__):
            return True
        chain.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for name in ("reason", "__cause__"):
            child = getattr(current, name, None)
            if isinstance(child, BaseException):
                chain.append(child)
    return False


def _cause_and_hint(cause: BaseException, host: str) -> tuple[str, str]:
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = (
            getattr(cause, "verify_message", None)
            or getattr(cause, "reason", None)
            or "the certificate is not trusted"
        )
        if "hostname mismatch" in reason.lower() or "ip address mismatch" in reason.lower():
            return f"certificate verify failed: {reason}", (
                "the certificate presented is for another name: check the endpoint URL, and "
                "whether a proxy answers in its place"
            )
        return f"certificate verify failed: {reason}", (
            "the certificate is not signed by a CA this host trusts: behind a TLS-inspecting "
            "proxy, set the tenant's ca_file to that proxy's CA certificate (PEM)"
        )
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed: {cause.reason or cause}", (
            "something between this host and the server interferes with TLS: check proxy "
            "and the firewall"
        )
    if isinstance(cause, socket.gaierror):
        return f"the name does not resolve ({cause.strerror})", (
            f"check DNS on this host for {host}; where only a proxy reaches the internet, set proxy"
        )
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused", (
            "nothing listens there or a firewall rejects the connection: check the endpoint "
            "URL, proxy, and the firewall (outbound TCP 443)"
        )
    if isinstance(cause, ConnectionResetError):
        return "the connection was reset", (
            "a proxy or firewall cut it: check proxy and the firewall"
        )
    if isinstance(cause, TimeoutError):
        return "no answer (timed out)", (
            f"a firewall may drop the traffic: allow outbound TCP 443 to {host}, or set proxy"
        )
    if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"{cause.strerror or 'unreachable'}", (
            "this host has no route there: check its network, or set proxy"
        )
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror, "check the endpoint URL, proxy, and the firewall"
    return type(cause).__name__, "check the endpoint URL, proxy, and the firewall"


def unreachable(error: BaseException, url: str, *, proxy: str = "") -> str:
    """`cannot reach HOST:PORT: CAUSE — what to check`, for a request to `url` that failed
    without an answer. Names the proxy when the failure was reaching it."""
    parts = urlsplit(url)
    host = parts.hostname or url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    cause, hint = _cause_and_hint(root_cause(error), host)
    if proxy and _through_proxy(error):
        proxy_parts = urlsplit(proxy)
        where = f"proxy {proxy_parts.hostname}:{proxy_parts.port or 80}"
        return f"cannot reach {host}:{port} through {where}: {cause} — check the proxy setting"
    return f"cannot reach {host}:{port}: {cause} — {hint}"


def bind_issue(error: OSError, where: str, host: str, port: int) -> ConfigIssue:
    """A `ConfigIssue` for a socket that cannot listen on `host:port`: the cause and what to
    do (another process on the port, a privileged port, an address this host does not have)."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # asyncio rewords the message ("error while attempting to bind on address …"): the
    # system's own words for the errno are shorter and the same everywhere.
    cause = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
    if error.errno == errno.EADDRINUSE:
        hint = (
            f"another process listens there (find it with: ss -ltnp 'sport = :{port}'); "
            "stop it, or choose another port"
        )
    elif error.errno == errno.EACCES:
        hint = (
            "ports below 1024 need the CAP_NET_BIND_SERVICE capability (the systemd unit "
            "grants it; with Docker or podman map a high port instead) or root; or listen on "
            "a port of 1024 or more"
        )
    elif error.errno == errno.EADDRNOTAVAIL:
        hint = "this host has no such address: use 0.0.0.0, :: or one of its own addresses"
    else:
        hint = "check the address and port"
    return ConfigIssue(where, f"cannot listen on {shown}: {cause}", hint)


def try_bind(host: str, port: int) -> OSError | None:
    """Whether a TCP socket could listen on `host:port` now (None), or why not. The socket is
    closed at once; `SO_REUSEADDR` as the servers set it, so TIME_WAIT does not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            probe.listen(1)
    except OSError as error:
        return error
    return None
