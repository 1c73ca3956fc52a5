"""A bare aiosmtpd sink that fsyncs each message (file and directory) before 250.

The floor for any Python gateway on this machine: `bench/accept.py` loads it and the gateway
the same way. Run: python bench/sink.py PORT DIRECTORY
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP


class DurableSink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _write(self, data: bytes) -> None:
        path = self.directory / uuid.uuid4().hex
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.to_thread(self._write, envelope.original_content)
        return "250 2.0.0 OK"


async def main(port: int, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    handler = DurableSink(directory)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink"), "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
