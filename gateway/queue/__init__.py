"""The queue: where accepted mail waits until a transport has taken it. `model` is what every
backend keeps; `base.Queue` is the one interface the delivery engine, the control socket, the
queue commands and metrics use; `admin` the queue operations; `migrate` moves a queue from
one backend to another. The file spool (`gateway.spool`) is the embedded backend, PostgreSQL
(`gateway.pgqueue`) the cluster's."""

from gateway.queue.model import Due, Entry, Envelope, Exported, Listed, QueuedMessage

__all__ = ["Due", "Entry", "Envelope", "Exported", "Listed", "QueuedMessage"]
