"""High Volume Email's refusals, explained: what an HVE account cannot do, and what to change.

HVE (`smtp_endpoint: hve`, smtp-hve.office365.com:587) takes SMTP OAuth for dedicated HVE
accounts, which send to recipients inside the organisation. Two refusals are the
administrator's to fix, not the message's to retry: an account that is not an HVE account (or
an app it does not allow) refused at MAIL FROM, and recipients outside the organisation refused
at RCPT TO. Both hold the message with a reason that says what to do. Keyed on the stage and
the code, not the server's wording. Pure.
"""

from __future__ import annotations

from gateway.smtp_oauth.classify import HOLD, SmtpAnswer

_ACCOUNT_HINT = (
    "Make it an HVE account (Exchange admin center > Mail flow > High volume email), allow this "
    "app to use it (Add-HVEAppAccess -Identity {account} -AppIds <the app's client ID>), and "
    "send as it (send_as: {account}); or send this mail through a mailbox: a tenant with "
    "transport: graph. Then release it: smtp-graph-gateway queue release ID."
)
_EXTERNAL_HINT = (
    "HVE accounts send only to recipients inside the organisation. Send mail for outside "
    "recipients through a mailbox (a tenant with transport: graph, chosen for this sender in "
    "routing.addresses), or keep HVE for internal mail. Then release it or delete it: "
    "smtp-graph-gateway queue release|delete ID."
)


def explain_hve(
    answer: SmtpAnswer, *, account: str, domains: tuple[str, ...]
) -> tuple[str, str] | None:
    """(HOLD, explanation) for a refusal only High Volume Email gives; None for any other
    answer (the usual classification applies). `domains` are the organisation's (the
    tenant's), `account` the mailbox the route sends as."""
    code, stage = answer.code, answer.stage
    quoted = f"{code} {answer.text}".strip()
    if stage == "mail" and 550 <= code <= 554:
        return HOLD, (
            f"High Volume Email refused {account} as the sender ({quoted}): it is not an HVE "
            f"account, or this app may not send as it. {_ACCOUNT_HINT.format(account=account)}"
        )
    if stage == "rcpt" and code >= 500 and answer.refused:
        external = [r for r in answer.refused if not _internal(r, domains)]
        if external:
            return HOLD, (
                f"High Volume Email refused recipients outside the organisation: "
                f"{', '.join(external)} ({quoted}). {_EXTERNAL_HINT}"
            )
    return None


def _internal(address: str, domains: tuple[str, ...]) -> bool:
    domain = address.rpartition("@")[2].lower()
    return any(
        domain == pattern or (pattern.startswith("*.") and domain.endswith(pattern[1:]))
        for pattern in domains
    )
