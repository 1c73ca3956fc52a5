"""Pure classification of Graph answers into delivery outcomes.

Keyed on the HTTP status and Graph's `error.code`, never on the message text (see DESIGN.md,
"Delivery outcomes"). Each outcome carries an explanation an administrator can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

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

_ACCESS_DENIED_HINT = (
    "the app is not allowed to act for this mailbox: check that Mail.Send (application) has "
    "admin consent, and that an ApplicationAccessPolicy or RBAC for Applications scope "
    "includes the mailbox (Test-ServicePrincipalAuthorization)"
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a message after one Graph answer."""

    delivered: bool = False
    permanent: bool = False
    refresh_token: bool = False
    too_large: bool = False
    explanation: str = ""


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
        return Outcome(explanation=_ACCESS_DENIED_HINT)
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
