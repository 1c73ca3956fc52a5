"""What an SMTP submission's answer means: delivered, retry, hold, or a credentials problem,
with an explanation an administrator can act on (from Microsoft Learn, see session.py). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SmtpAnswer:
    """How one submission ended: the reply that decided it and the stage it came at.

    `code` 0 means no server reply decided it: this client stopped, `text` says why (no
    STARTTLS, an untrusted certificate, no XOAUTH2, an envelope address it cannot send).
    `refused_replies[i]` is the (code, text) of the RCPT reply that refused `refused[i]`.
    """

    code: int
    text: str
    stage: str  # "connect" | "starttls" | "auth" | "mail" | "rcpt" | "data" | "done"
    refused: tuple[str, ...] = ()
    refused_replies: tuple[tuple[int, str], ...] = ()
    duration: float = 0.0


DELIVERED = "delivered"
RETRY = "retry"
HOLD = "hold"
CREDENTIALS = "credentials"
_WHERE = {
    "connect": "when connecting",
    "starttls": "at STARTTLS",
    "auth": "at AUTH",
    "mail": "at MAIL FROM",
    "rcpt": "at RCPT TO",
    "data": "at DATA",
    "done": "after the message",
}


def classify_smtp(answer: SmtpAnswer) -> tuple[str, str]:
    """("delivered" | "retry" | "hold" | "credentials", an explanation for an administrator).

    delivered    2xx after the message.
    retry        any 4xx, at any stage.
    credentials  a problem with the token or the tenant's set-up, not with this message: 5xx
                 at AUTH (535 5.7.3, 5.7.139, 534, 530, 504 …), 530 / 5.7.57 at MAIL (not
                 authenticated), a refused STARTTLS, and the client's own refusals before AUTH
                 (no STARTTLS, an untrusted certificate, no XOAUTH2).
    hold         every other 5xx (550 5.7.60 send-as denied, 554 after the data …) and
                 anything unexpected; the server's text is quoted.
    """
    code, stage, text = answer.code, answer.stage, answer.text
    quoted = f"{code} {text}".strip() if code else text
    where = _WHERE.get(stage, f"at {stage}")
    if stage == "done" and 200 <= code < 300:
        if answer.refused:
            return DELIVERED, (
                f"accepted ({quoted}) for all recipients but {len(answer.refused)} refused at "
                f"RCPT TO: {_refusals(answer)}"
            )
        return DELIVERED, f"accepted: {quoted}"
    if 400 <= code < 500:
        return RETRY, f"the server deferred the message {where} (temporary): {quoted}"
    if code == 0:
        return (CREDENTIALS if stage in ("starttls", "auth") else HOLD), text
    if stage == "starttls":
        return CREDENTIALS, (
            f"the server refused STARTTLS ({quoted}); the token is only sent over TLS: check "
            "the SMTP endpoint (smtp.office365.com:587)"
        )
    if stage == "auth":
        if "5.7.139" in text:
            return CREDENTIALS, f"the server refused the token ({quoted}). {_SMTP_AUTH_DISABLED}"
        if code in (530, 534, 535):
            return CREDENTIALS, f"the server refused the token ({quoted}). {_REJECTED_HINT}"
        return CREDENTIALS, (
            f"the server refused AUTH XOAUTH2 ({quoted}); check that the endpoint is Exchange "
            f"Online's SMTP submission service with OAuth. {_SMTP_AUTH_DISABLED}"
        )
    if code == 530 or "5.7.57" in text:
        return CREDENTIALS, (
            f"the server does not consider the session authenticated {where} ({quoted}). "
            f"{_REJECTED_HINT}"
        )
    if "5.7.60" in text or "SendAsDenied" in text or "5.2.252" in text:
        return HOLD, (
            f"the authenticated mailbox may not send as this sender ({quoted}, {where}). "
            f"{_SEND_AS_DENIED}"
        )
    if code >= 500:
        if stage == "rcpt":
            return HOLD, f"the server refused every recipient: {_refusals(answer) or quoted}"
        return HOLD, f"the server refused the message {where}: {quoted}"
    return HOLD, f"unexpected reply {where}: {quoted}"


_REJECTED_HINT = (
    "Exchange Online rejects XOAUTH2 tokens for the wrong resource, expired ones and ones "
    "without the right permission. App-only (client credentials): the token must be for "
    "https://outlook.office365.com/.default from an app granted the 'Office 365 Exchange "
    "Online' application permission SMTP.SendAsApp with admin consent, and the app's service "
    "principal must be registered in Exchange Online (New-ServicePrincipal -AppId <client id> "
    "-ObjectId <object id of the Enterprise application>) and given access to the mailbox "
    "(Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights "
    "FullAccess). Delegated: the token must carry https://outlook.office.com/SMTP.Send for "
    "the signed-in user the gateway sends as, and that user must have SMTP AUTH enabled "
    "(Set-CASMailbox -Identity <user> -SmtpClientAuthenticationDisabled $false). See "
    "'Authenticate an IMAP, POP or SMTP connection using OAuth' on Microsoft Learn."
)
_SMTP_AUTH_DISABLED = (
    "SMTP AUTH must be enabled for the sending mailbox (Set-CASMailbox -Identity <mailbox> "
    "-SmtpClientAuthenticationDisabled $false) or the organisation (Set-TransportConfig "
    "-SmtpClientAuthenticationDisabled $false), and security defaults or an authentication "
    "policy must not block it. See 'Enable or disable SMTP AUTH in Exchange Online' on "
    "Microsoft Learn."
)
_SEND_AS_DENIED = (
    "Over SMTP, MAIL FROM must be the authenticated mailbox, or that mailbox (or the app's "
    "service principal) needs Send As on the sender (Add-RecipientPermission -Identity <sender> "
    "-Trustee <mailbox or service principal> -AccessRights SendAs)."
)


def _refusals(answer: SmtpAnswer) -> str:
    parts = [
        f"{address} ({code} {text})".strip()
        for address, (code, text) in zip(answer.refused, answer.refused_replies, strict=False)
    ]
    return "; ".join(parts)
