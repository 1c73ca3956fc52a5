"""SMTP OAuth as a `Transport`: the envelope goes as it is, MAIL FROM is the mailbox signed in
as, a token the server refuses is replaced once, and the server's answer is classified here.

No Bcc header is needed (the envelope carries the recipients) and one the client left is
removed; with a send-as route the From is rewritten as for Graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from gateway.entra.tokens import TokenProviders
from gateway.errors import TokenError
from gateway.mime.buffer import Buffer
from gateway.mime.headers import header_section, remove_headers
from gateway.mime.sender import rewrite_from
from gateway.routing import Route
from gateway.smtp_oauth.classify import CREDENTIALS, DELIVERED, HOLD, classify_smtp
from gateway.smtp_oauth.hve import explain_hve
from gateway.smtp_oauth.session import submit
from gateway.smtp_oauth.wire import Spliced
from gateway.transport import Answer, Refusal, Submission, Verdict

FORM = "smtp"
log = structlog.get_logger("gateway.delivery")


class SmtpOAuthTransport:
    """Submits messages over SMTP with XOAUTH2; holds no state between messages."""

    def __init__(self, tokens: TokenProviders, *, timeout: float = 60.0) -> None:
        self._tokens = tokens
        self._timeout = timeout

    async def send(
        self, route: Route, message: Buffer, recipients: Sequence[str], *, trace: bytes = b""
    ) -> Submission:
        """Submit `message` to `recipients` as `route`'s mailbox; TransportError when no reply
        decides it, TokenError when no token works. Only the header section is rewritten
        (`trace` put before it); the body is sent from the queue a piece at a time."""
        if not route.save_to_sent_items:  # (a client's or user's setting; a tenant's is refused)
            log.info(
                "sent_items_kept",
                reason="save_to_sent_items is false, but SMTP submission has no way to ask "
                "Exchange not to keep a copy",
            )
        original = header_section(message)
        head = original
        if b"bcc:" in head.lower():
            head = remove_headers(head, {"bcc"})
        if route.rewrite_from:
            head = rewrite_from(head, route.mailbox, reply_to_sender=route.reply_to_sender)
        head = trace + head
        outgoing = Spliced(head, message, len(original)) if head != original else message
        tenant = route.tenant
        provider = self._tokens.for_tenant(tenant)
        host, port = tenant.smtp_endpoint
        for attempt in range(2):
            answer = await submit(
                host=host,
                port=port,
                username=route.mailbox,
                token=await provider.get(),
                mail_from=route.mailbox,
                recipients=recipients,
                message=outgoing,
                ca_file=tenant.ca_file,
                timeout=self._timeout,
            )
            result, explanation = classify_smtp(answer)
            if tenant.hve:  # High Volume Email's own refusals say what to change
                hve = explain_hve(answer, account=route.mailbox, domains=tenant.domains)
                result, explanation = hve if hve is not None else (result, explanation)
            if result != CREDENTIALS:
                break
            provider.invalidate()  # a token refused at AUTH: once more with a fresh one
            if attempt == 1:
                raise TokenError(f"tenant {tenant.name}: {explanation}", code=f"SMTP {answer.code}")
        neutral = Answer(
            status=answer.code,
            code=f"SMTP {answer.code}" if answer.code else "SMTP",
            message=answer.text,
            duration=answer.duration,
        )
        verdict = Verdict(
            delivered=result == DELIVERED, permanent=result == HOLD, explanation=explanation
        )
        refused = tuple(
            Refusal(recipient, code, text)
            for recipient, (code, text) in zip(answer.refused, answer.refused_replies, strict=False)
        )
        return Submission(neutral, verdict, FORM, refused)
