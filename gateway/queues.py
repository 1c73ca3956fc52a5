"""Which queue a configuration means: the file spool (`spool.backend: files`, the default) or a
cluster's PostgreSQL queue. The daemon, the queue commands, `check` and `spool migrate` all
build theirs here, so they agree on it."""

from __future__ import annotations

from concurrent.futures import Executor

from gateway.config import SpoolSettings
from gateway.queue.base import Queue
from gateway.spool import FileQueue


def build_queue(
    spool: SpoolSettings,
    *,
    accept_executor: Executor | None = None,
    delivery_executor: Executor | None = None,
) -> Queue:
    """The configured queue, not opened yet."""
    if spool.backend == "postgresql":
        assert spool.postgresql is not None  # the loader requires it
        from gateway.pgqueue.queue import PgQueue  # noqa: PLC0415 - the driver only when used

        return PgQueue(spool.postgresql, directory=spool.directory, max_messages=spool.max_messages)
    return FileQueue(
        spool.directory,
        min_free_space=spool.min_free_space,
        accept_executor=accept_executor,
        delivery_executor=delivery_executor,
    )


def describe(spool: SpoolSettings) -> str:
    """The queue in words, for messages: where it is (never a password)."""
    if spool.backend == "postgresql" and spool.postgresql is not None:
        from gateway.pgqueue.connection import where  # noqa: PLC0415 - the DSN's hosts only

        return f"the cluster's queue in PostgreSQL ({where(spool.postgresql)})"
    return f"the spool in {spool.directory}"
