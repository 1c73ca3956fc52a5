"""Ports for the servers tests start, stop and start again on the same address.

A port found by binding port 0 lies in the kernel's ephemeral range, where every outgoing
connection (a load generator's, a database client's) also takes its local port: between finding
it and a gateway binding it, or between a node's stop and its restart, a client may hold it and
the gateway fails with "Address already in use". These ports come from below that range, each
pytest-xdist worker its own slice, and none is handed out twice in one run.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

FIRST = 10000
SLICE = 2500


def _ephemeral_floor() -> int:
    try:
        low = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]
    except (OSError, IndexError):
        return 32768
    return int(low)


def _worker() -> int:
    digits = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def _candidates() -> Iterator[int]:
    start = FIRST + _worker() * SLICE
    end = min(start + SLICE, _ephemeral_floor())
    if end - start < 100:  # a narrowed ephemeral range, or very many workers: ask the kernel
        while True:
            yield 0
    offset = random.randrange(end - start)  # spread over runs
    yield from itertools.cycle([*range(start + offset, end), *range(start, start + offset)])


_ports = _candidates()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now and no client takes by chance."""
    for candidate in _ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise AssertionError("unreachable: the candidates never end")
