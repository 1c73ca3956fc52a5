"""Console sessions: random IDs kept only in memory, an idle timeout, a CSRF token each.

A session ID is made by the server at sign-in and never taken from a client (no fixation);
whoever presents an unknown or expired ID is simply not signed in. Each session carries its
own CSRF token, which every state-changing form and API call must repeat. The clock is
injected, so the timeout is testable without waiting. Sessions end with the process: a
restart signs everyone out.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_MAX_SESSIONS = 10_000


@dataclass
class Session:
    """One signed-in browser."""

    id: str = field(repr=False)
    username: str
    role: str
    csrf: str = field(repr=False)
    last_seen: float
    notice: str = ""  # a line for the next page (what the last action did)

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether `presented` is this session's CSRF token (compared in constant time)."""
        return bool(presented) and hmac.compare_digest(self.csrf, presented or "")


class Sessions:
    """The signed-in sessions of one console."""

    def __init__(self, idle_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._idle = idle_timeout
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    def create(self, username: str, role: str) -> Session:
        """A new session with fresh, unguessable ID and CSRF token."""
        now = self._clock()
        if len(self._sessions) >= _MAX_SESSIONS:
            self._sessions = {
                key: s for key, s in self._sessions.items() if now - s.last_seen < self._idle
            }
        session = Session(
            id=secrets.token_urlsafe(32),
            username=username,
            role=role,
            csrf=secrets.token_urlsafe(32),
            last_seen=now,
        )
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The live session with this ID, else None. Its idle time starts again unless
        `touch` is false (a page reloading itself is not someone at the keyboard)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen >= self._idle:
            del self._sessions[session_id]
            return None
        if touch:
            session.last_seen = now
        return session

    def end(self, session_id: str | None) -> Session | None:
        """Sign a session out; the session it was, if any."""
        return self._sessions.pop(session_id, None) if session_id else None

    def __len__(self) -> int:
        return len(self._sessions)
