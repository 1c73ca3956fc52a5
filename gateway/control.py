"""The daemon's control socket: queue commands reach a running gateway through it.

A Unix socket `control.sock` inside the spool directory (mode 0600, in a 0700 folder), one
JSON request per connection, one JSON answer. The daemon performs the operation with
`QueueAdmin` and the delivery engine learns of it at once, so `queue retry` or `queue release`
take effect without a restart. `send_request` is the client side, used by the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import AdminError
from gateway.queue.admin import QueueAdmin

log = structlog.get_logger("gateway.control")
SOCKET_NAME = "control.sock"
_MAX_REQUEST = 64 * 1024


class ControlServer:
    """Serves queue operations for the running daemon."""

    def __init__(self, spool_directory: Path, admin: QueueAdmin) -> None:
        self.path = spool_directory / SOCKET_NAME
        self._admin = admin
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen on the socket (replacing a stale one left by a crash)."""
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        self.path.chmod(0o600)

    async def stop(self) -> None:
        """Stop listening and remove the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            answer = await self._answer(line[:_MAX_REQUEST])
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            operation = str(request["operation"])
            queue_id = str(request.get("queue_id", ""))
            older_than = float(request.get("older_than", 0.0))
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "malformed request"}
        try:
            result = await self._admin.run(operation, queue_id, older_than)
        except AdminError as error:
            return {"ok": False, "error": str(error)}
        log.info("queue_admin", operation=operation, queue_id=queue_id or None, result=result)
        return {"ok": True, **result}


def send_request(
    spool_directory: Path, request: dict[str, Any], timeout: float = 30
) -> dict[str, Any] | None:
    """Ask a running daemon; None when no daemon listens on this spool."""
    path = spool_directory / SOCKET_NAME
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        try:
            client.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return None
        client.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = client.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data) if data else {"ok": False, "error": "no answer from the daemon"}
    return answer if isinstance(answer, dict) else {"ok": False, "error": "bad answer"}
