"""The file spool: the embedded queue backend (one node, one directory). `Spool` is the
blocking directory itself, `FileQueue` the gateway's `Queue` on top of it."""

from gateway.queue.model import Envelope, QueuedMessage
from gateway.spool.queue import FileQueue
from gateway.spool.store import Spool

__all__ = ["Envelope", "FileQueue", "QueuedMessage", "Spool"]
