"""Fuzz target `proxy`: the PROXY protocol header a balancer sends before SMTP starts.

`aiosmtpd.proxy_protocol.get_proxy` over a `StreamReader` fed the input then end of stream,
as gateway/smtp/session.py `_proxy_handshake` calls it: it may return or raise only what that
code handles (TimeoutError, asyncio.IncompleteReadError), and the handshake's uses of the
result (`valid`, `error`, `src_addr`, `src_port`) must work on what it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiosmtpd.proxy_protocol import get_proxy

MAX_LEN = 1024
_loop: asyncio.AbstractEventLoop | None = None


def one_input(data: bytes) -> None:
    """Run the handshake's reading and use of a PROXY header on `data`."""
    _event_loop().run_until_complete(_handshake(data))


async def _handshake(data: bytes) -> None:
    reader = asyncio.StreamReader(limit=1001)  # aiosmtpd's SMTP makes its reader so
    reader.feed_data(data)
    reader.feed_eof()
    try:
        proxy = await asyncio.wait_for(get_proxy(reader), 10.0)
    except (TimeoutError, asyncio.IncompleteReadError):
        return
    if type(proxy.valid) is not bool:
        raise AssertionError(f"ProxyData.valid is {proxy.valid!r}")
    if not proxy.valid:
        str(proxy.error or "malformed PROXY header")
        return
    if proxy.src_addr is not None:
        peer = (str(proxy.src_addr), proxy.src_port or 0)
        if not isinstance(peer[1], int):
            raise AssertionError(f"PROXY source port {peer[1]!r} is not a number")


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop  # noqa: PLW0603 - one loop per process: a new one per input costs more than the test
    if _loop is None:
        _loop = asyncio.new_event_loop()
    return _loop


# --- seeds ----------------------------------------------------------------------------------

_V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def _v2(command: int, family: int, body: bytes) -> bytes:
    return _V2 + bytes([0x20 | command, family]) + len(body).to_bytes(2, "big") + body


_HAND_WRITTEN = {
    "v1-tcp4": b"PROXY TCP4 192.168.10.7 10.0.0.5 51234 25\r\nEHLO x\r\n",
    "v1-tcp6": b"PROXY TCP6 fd00:10::7 fd00::1 51234 25\r\n",
    "v1-unknown": b"PROXY UNKNOWN\r\n",
    "v1-bad-port": b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 25\r\n",
    "v2-local": _v2(0, 0x00, b""),
    "v2-tcp4": _v2(1, 0x11, bytes([192, 168, 10, 7, 10, 0, 0, 5]) + b"\xc8\x22\x00\x19"),
    "v2-tcp6-tlv": _v2(
        1,
        0x21,
        bytes(range(32))
        + b"\x00\x19\x00\x19"
        + b"\x20\x00\x05\x01\x00\x00\x00\x00"
        + b"\x02\x00\x04host",
    ),
    "v2-unix": _v2(1, 0x31, b"/run/a".ljust(108, b"\0") + b"/run/b".ljust(108, b"\0")),
    "v2-truncated": _v2(1, 0x11, b"\x01\x02")[:-1],
    "not-proxy": b"EHLO printer\r\n",
}


def seeds(messages: Mapping[str, bytes]) -> dict[str, bytes]:
    """Hand-written PROXY v1 and v2 headers (the test messages are not PROXY headers)."""
    return dict(_HAND_WRITTEN)
