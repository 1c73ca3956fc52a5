"""Named SMTP replies, used by the listener and by the tests alike.

Each reply has the basic code, the enhanced status code (RFC 3463) and a short text. Texts say
what happened in words an administrator can act on; they never include exception text.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply line."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def with_text(self, text: str) -> Reply:
        """The same codes with a more specific text."""
        return Reply(self.code, self.enhanced, text)

    @property
    def is_transient(self) -> bool:
        """True for 4xx replies: the client should try again later."""
        return 400 <= self.code < 500


CLIENT_NOT_ALLOWED = Reply(554, "5.7.1", "Client host not allowed to use this relay")
CLIENT_NOT_ALLOWED_AT_MAIL = Reply(550, "5.7.1", "Client host not allowed to use this relay")
SENDER_NOT_ALLOWED = Reply(550, "5.7.1", "Sender address not allowed for this client")
NO_TENANT_FOR_SENDER = Reply(550, "5.7.1", "Sender domain is not served by this gateway")
BAD_SENDER_SYNTAX = Reply(553, "5.1.7", "Sender address is not valid")
BAD_RECIPIENT_SYNTAX = Reply(553, "5.1.3", "Recipient address is not valid")
NULL_SENDER_NOT_ALLOWED = Reply(550, "5.7.1", "Null sender cannot be delivered through Graph")
RECIPIENT_NOT_ALLOWED = Reply(550, "5.7.1", "Recipient not allowed for this client")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
BAD_CREDENTIALS = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_SYNTAX = Reply(501, "5.5.2", "Cannot decode the AUTH response")
AUTH_LOCKED_OUT = Reply(454, "4.7.0", "Too many failed logins from your address, try again later")
NO_SMTPUTF8 = Reply(553, "5.6.7", "Non-ASCII addresses (SMTPUTF8) cannot be delivered; use ASCII")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header section too large")
MIME_TOO_COMPLEX = Reply(554, "5.6.0", "MIME structure nested too deeply")
MALFORMED_HEADER = Reply(554, "5.6.0", "Malformed header")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds the fixed limit")
SIGNED_TOO_BIG = Reply(552, "5.3.4", "Signed or encrypted message too big to relay unchanged")
SPOOL_UNAVAILABLE = Reply(452, "4.3.1", "Insufficient system storage, try again later")
UNEXPECTED = Reply(451, "4.3.0", "Temporary local problem, try again later")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
QUEUE_UNAVAILABLE = Reply(421, "4.3.2", "Mail queue not available, try again later")
NOT_STORED = Reply(451, "4.3.0", "The message could not be stored, try again later")
IDLE_TOO_LONG = Reply(421, "4.4.2", "Idle too long without sending a message, closing")
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")


def too_big_for_sender(limit: str) -> Reply:
    """The message (or its declared SIZE) is over what this sender's route delivers."""
    return Reply(552, "5.3.4", f"Message too big for this sender (limit {limit})")


def queued(queue_id: str) -> Reply:
    """The reply for a message that is durable on disk."""
    return Reply(250, "2.0.0", f"queued as {queue_id}")
