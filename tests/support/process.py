"""Run `smtp-graph-gateway` as a real process and read its JSON log lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class GatewayProcess:
    """A `python -m gateway serve` child process with JSON logs on stderr.

    A background task reads stderr all the time: a child whose log pipe fills up would block.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []
        self._cursor = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(
        cls, config: Path, *args: str, python: Sequence[str] = (sys.executable,)
    ) -> GatewayProcess:
        """Start the daemon with `python -m gateway serve` (`python`: the command that runs
        Python, for a test that wraps it)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *python,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "unparsed", "line": line.decode(errors="replace")}
            self.events.append(event if isinstance(event, dict) else {"event": "unparsed"})
            self._changed.set()
        self._changed.set()

    async def wait_for_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """The next log event named `name` after the previous one waited for."""
        async with asyncio.timeout(timeout):
            while True:
                while self._cursor < len(self.events):
                    event = self.events[self._cursor]
                    self._cursor += 1
                    if event.get("event") == name:
                        return event
                if self._reader.done():
                    raise AssertionError(f"process ended before {name!r}: {self.events[-5:]}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_exit(self, timeout: float = 20.0) -> int:
        """Wait for the process to end (and its log to be read); its exit code."""
        async with asyncio.timeout(timeout):
            await self._reader
            return await self.process.wait()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def reap(self, timeout: float = 20.0) -> None:
        """Kill it if it still runs and wait until it is gone (its pipe closed): a test that
        failed halfway leaves nothing running for the next one."""
        self.kill()
        with contextlib.suppress(TimeoutError):
            await self.wait_exit(timeout)


class SmtpDialogue:
    """A raw SMTP connection, for tests that must control every byte and moment."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, source: str | None = None) -> SmtpDialogue:
        """Connect (from the loopback address `source`, when given) and read the greeting."""
        local = (source, 0) if source else None
        reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        dialogue = cls(reader, writer)
        greeting = await dialogue.reply()
        assert greeting.startswith("220"), greeting
        return dialogue

    async def reply(self, timeout: float = 20.0) -> str:
        """One (possibly multi-line) reply, lines joined with newlines."""
        lines = []
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.reader.readline()).decode()
                if not line:
                    return "\n".join(lines) if lines else "<closed>"
                lines.append(line.rstrip("\r\n"))
                if len(line) < 4 or line[3] != "-":
                    return "\n".join(lines)

    async def command(self, text: str) -> str:
        self.writer.write(text.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def starttls(self, context: ssl.SSLContext) -> None:
        """STARTTLS and the TLS handshake on this connection."""
        reply = await self.command("STARTTLS")
        assert reply.startswith("220"), reply
        await self.writer.start_tls(context, server_hostname="127.0.0.1")

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
