"""Every open SMTP session of the gateway, so that a shutdown can reach, drain and count them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.smtp.session import GatewaySMTP


class SessionRegistry:
    """Every open SMTP session, so that shutdown can drain them."""

    def __init__(self) -> None:
        self._sessions: set[GatewaySMTP] = set()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, protocol: GatewaySMTP) -> None:
        """Track a new connection."""
        self._sessions.add(protocol)
        self._empty.clear()

    def discard(self, protocol: GatewaySMTP) -> None:
        """Forget a closed connection."""
        self._sessions.discard(protocol)
        if not self._sessions:
            self._empty.set()

    def count_must_log_in(self, handler: Any) -> int:
        """Open connections from hosts outside `clients` that may only log in."""
        return sum(
            1
            for protocol in self._sessions
            if protocol.session is not None and handler.must_log_in(protocol.session)
        )

    def count(self, ip: str) -> int:
        """Open connections from one address."""
        return sum(
            1
            for protocol in self._sessions
            if protocol.session is not None
            and isinstance(protocol.session.peer, tuple)
            and protocol.session.peer[0] == ip
        )

    def begin_drain(self) -> None:
        """Ask every session to finish: idle ones close now, busy ones after their DATA."""
        for protocol in list(self._sessions):
            protocol.begin_drain()

    async def wait_empty(self, timeout: float) -> bool:
        """Wait until every session has closed; False on timeout."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def abort_all(self) -> None:
        """Close every remaining connection at once."""
        for protocol in list(self._sessions):
            transport = protocol.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()
