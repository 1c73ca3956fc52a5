"""A sink that answers 250 without storing: aiosmtpd's own DATA reader, or the gateway's.

Run: python bench/data_sink.py PORT aiosmtpd|gateway
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiosmtpd.smtp import SMTP

from gateway.smtp.registry import SessionRegistry
from gateway.smtp.session import GatewaySMTP, SessionLimits


class Discard:
    """A message's receipt that keeps nothing (the gateway's reader hands it each piece)."""

    size = 0

    async def write(self, data: bytes) -> None:
        self.size += len(data)

    async def abort(self) -> None:
        return None


class Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 2.0.0 OK"

    # The gateway's protocol asks its handler these; the sink admits everyone and stores
    # nothing.
    def connect(self, session: Any) -> None:
        return None

    def too_many(self, session: Any, total: int, *, reserved: bool = False) -> None:
        return None

    def must_log_in(self, session: Any) -> bool:
        return False

    def begin_message(self) -> Discard:
        return Discard()

    async def end_message(self, session: Any, envelope: Any, receipt: Discard) -> str:
        return "250 2.0.0 OK"


async def main(port: int, kind: str) -> None:
    handler = Sink()
    registry = SessionRegistry()
    limit = 40 * 1024 * 1024

    def protocol() -> SMTP:
        if kind == "gateway":
            return GatewaySMTP(
                handler,
                registry=registry,
                listener="bench",
                hostname="sink",
                data_size_limit=limit,
                limits=SessionLimits(max_connections=10_000, per_ip=10_000),
            )
        return SMTP(handler, hostname="sink", data_size_limit=limit)

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
