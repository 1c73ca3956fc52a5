"""The durable queue: accepted messages live here until Graph has taken them."""

from gateway.spool.format import Envelope
from gateway.spool.store import QueuedMessage, Recovered, Spool

__all__ = ["Envelope", "QueuedMessage", "Recovered", "Spool"]
