"""The queue page's filters and paging, as plain functions over the queue's listing.

A filter comes from a query string (the page's form, or the API's parameters); every field is
optional and a wrong one is reported by name, not ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gateway.config import parse_duration
from gateway.queue.model import STATE_NAMES, STATE_WORDS, queued_at

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class FilterError(ValueError):
    """A query parameter that cannot be used (the message names it)."""


@dataclass(frozen=True, slots=True)
class Filter:
    """Which messages to list."""

    state: str | None = None  # stored name: queue, active, hold, corrupt
    sender: str = ""  # part of the envelope sender
    recipient: str = ""  # part of any recipient
    tenant: str = ""  # the tenant that routes the sender
    device: str = ""  # the client address or AUTH user that sent it
    older_than: float = 0.0  # seconds since arrival, at least
    newer_than: float = 0.0  # seconds since arrival, at most (0 = any)
    page: int = 1
    per_page: int = PAGE_SIZE

    def query(self, **changes: object) -> dict[str, str]:
        """The query string that asks for this filter (with `changes`), for links."""
        values: dict[str, object] = {
            "state": STATE_WORDS.get(self.state or "", ""),
            "sender": self.sender,
            "recipient": self.recipient,
            "tenant": self.tenant,
            "device": self.device,
            "older_than": f"{self.older_than:g}s" if self.older_than else "",
            "newer_than": f"{self.newer_than:g}s" if self.newer_than else "",
            "page": self.page if self.page != 1 else "",
            "per_page": self.per_page if self.per_page != PAGE_SIZE else "",
        }
        values.update(changes)
        return {key: str(value) for key, value in values.items() if value not in ("", None)}


def parse_filter(query: Mapping[str, str]) -> Filter:
    """A `Filter` from query parameters; `FilterError` names the first wrong one."""
    state_text = query.get("state", "").strip().lower()
    state = None
    if state_text and state_text != "any":
        if state_text not in STATE_NAMES:
            raise FilterError(f"state: no state {state_text!r}: use queued, sending, held, corrupt")
        state = STATE_NAMES[state_text]
    return Filter(
        state=state,
        sender=query.get("sender", "").strip().lower(),
        recipient=query.get("recipient", "").strip().lower(),
        tenant=query.get("tenant", "").strip(),
        device=query.get("device", "").strip().lower(),
        older_than=_duration(query, "older_than"),
        newer_than=_duration(query, "newer_than"),
        page=_number(query, "page", 1, 1, 1_000_000),
        per_page=_number(query, "per_page", PAGE_SIZE, 1, MAX_PAGE_SIZE),
    )


def _duration(query: Mapping[str, str], key: str) -> float:
    text = query.get(key, "").strip()
    if not text:
        return 0.0
    try:
        return parse_duration(text)
    except ValueError as error:
        raise FilterError(f"{key}: {error} (e.g. 30m, 2h, 1d)") from None


def _number(query: Mapping[str, str], key: str, default: int, low: int, high: int) -> int:
    text = query.get(key, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise FilterError(f"{key}: not a number: {text!r}") from None
    if not low <= value <= high:
        raise FilterError(f"{key}: must be from {low} to {high}")
    return value


class Envelope(Protocol):
    """What the filters read of a message (a `Listed`, or the console's index entry)."""

    @property
    def mail_from(self) -> str: ...

    @property
    def rcpt_tos(self) -> tuple[str, ...]: ...

    @property
    def peer(self) -> str: ...

    @property
    def user(self) -> str: ...


def envelope_matches(item: Envelope, where: Filter, tenant_of: Callable[[str], str]) -> bool:
    """Whether a message's sender, recipients and tenant pass the filter (state and age are
    decided from the queue ID)."""
    if where.sender and where.sender not in item.mail_from.lower():
        return False
    if where.recipient and not any(where.recipient in r.lower() for r in item.rcpt_tos):
        return False
    if where.device and where.device not in (item.peer.lower(), item.user.lower()):
        return False
    return not where.tenant or tenant_of(item.mail_from) == where.tenant


def select(
    ids: list[tuple[str, str]],
    where: Filter,
    now: float,
    known: Mapping[str, Envelope] | None,
    tenant_of: Callable[[str], str],
) -> list[str]:
    """The queue IDs that pass the filter, newest first. Age comes from the queue ID (it is
    made at arrival); sender, recipient, device and tenant from `known` envelopes (None when
    the filter asks for none of them)."""
    if known is None and not where.older_than and not where.newer_than:
        return [queue_id for queue_id, _state in reversed(ids)]  # no filter needs a look
    tenants: dict[str, str] = {}

    def tenant(sender: str) -> str:
        if sender not in tenants:
            tenants[sender] = tenant_of(sender)
        return tenants[sender]

    found = []
    for queue_id, _state in reversed(ids):
        born = queued_at(queue_id)
        age = now - born if born is not None else 0.0
        if age < where.older_than or (where.newer_than and age > where.newer_than):
            continue
        if known is not None:
            envelope = known.get(queue_id)
            if envelope is None or not envelope_matches(envelope, where, tenant):
                continue
        found.append(queue_id)
    return found
