"""Pure classification of Graph answers into delivery outcomes, and `Retry-After` parsing.

Keyed on the HTTP status and Graph's `error.code`, never on the message text (the table is in
README, "Operations: retries, holds and bounces", from Microsoft's sendMail error codes in
`shared/reference/graph.md`). Each outcome carries an explanation an administrator can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from gateway.transport import Verdict

# code → (permanent?, what to do). Codes not listed fall back to the HTTP status.
_KNOWN: dict[str, tuple[bool, str]] = {
    "ErrorSendAsDenied": (
        True,
        "the app may not send as this From address: grant Send As on the mailbox, "
        "or configure the gateway to send as the mailbox itself",
    ),
    "MailboxNotEnabledForRESTAPI": (
        True,
        "the sending mailbox is inactive, soft-deleted, unlicensed or on-premises: "
        "give it an Exchange Online licence or send as another mailbox",
    ),
    "ErrorInvalidRecipients": (True, "Graph rejected the recipients as invalid"),
    "ErrorMessageSizeExceeded": (
        True,
        "the message is larger than the mailbox's maximum send size (Exchange default 35 MB)",
    ),
    "ErrorMimeContentInvalidBase64String": (True, "Graph could not read the MIME content"),
    "ErrorInvalidMimeContent": (True, "Graph could not read the MIME content"),
}

_SCOPE = (
    "an ApplicationAccessPolicy or an RBAC for Applications scope in Exchange Online leaves the "
    "mailbox out: add it to the policy's group or the scope (Test-ApplicationAccessPolicy, "
    "Test-ServicePrincipalAuthorization), or send as a mailbox inside it"
)
_ACCESS_DENIED_HINT = (
    "the app may not act for this mailbox, for one of two reasons: its token lacks Mail.Send "
    "(admin consent missing: add the Microsoft Graph application permission Mail.Send and "
    f"grant admin consent), or {_SCOPE}"
)


def explain_access_denied(
    roles: Sequence[str] | None,
    graph_message: str = "",
    *,
    mailbox: str = "",
    needed: Sequence[str] = ("Mail.Send",),
) -> str:
    """Which of the two causes of `ErrorAccessDenied` it is, from the permissions the access
    token carries (`roles`, None when unknown) against those the request `needed`, with
    Graph's own message."""
    if roles is None:
        text = _ACCESS_DENIED_HINT
    elif missing := [role for role in needed if role not in roles]:
        held = ", ".join(roles) if roles else "none"
        text = (
            f"the token has no {' or '.join(missing)} permission (it has: {held}): add the "
            f"Microsoft Graph application permission {' and '.join(missing)} and grant admin "
            "consent (App registrations → API permissions)"
        )
    else:
        which = f"mailbox {mailbox}" if mailbox else "the mailbox"
        text = f"the token has {' and '.join(needed)}, so " + _SCOPE.replace(
            "the mailbox", which, 1
        )
    return f"{text} (Graph: {graph_message})" if graph_message else text


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a message after one Graph answer."""

    delivered: bool = False
    permanent: bool = False
    refresh_token: bool = False
    too_large: bool = False
    access_denied: bool = False  # ErrorAccessDenied: the app's permissions or scope
    explanation: str = ""

    @property
    def verdict(self) -> Verdict:
        """The outcome in the transport seam's words."""
        return Verdict(
            delivered=self.delivered,
            permanent=self.permanent,
            configuration=self.access_denied,
            explanation=self.explanation,
        )


def classify(status: int, code: str) -> Outcome:
    """The outcome of a sendMail answer with HTTP `status` and Graph `error.code`."""
    if status in (200, 202):
        return Outcome(delivered=True)
    if code in _KNOWN:
        permanent, explanation = _KNOWN[code]
        return Outcome(permanent=permanent, explanation=explanation)
    if status == 401:
        return Outcome(refresh_token=True, explanation="Graph refused the access token")
    if status == 403 and code == "ErrorAccessDenied":
        # A configuration problem the administrator can fix: retried slowly, never bounced.
        return Outcome(access_denied=True, explanation=_ACCESS_DENIED_HINT)
    if status == 413:
        return Outcome(
            permanent=True,
            too_large=True,
            explanation="the request is larger than Graph's 4 MB limit",
        )
    if status in (408, 429) or status >= 500:
        return Outcome(explanation=f"Graph is busy or unavailable (HTTP {status})")
    if 400 <= status < 500:
        return Outcome(
            permanent=True, explanation=f"Graph refused the message (HTTP {status} {code})".strip()
        )
    return Outcome(explanation=f"unexpected answer from Graph (HTTP {status})")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date); None if absent/bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
