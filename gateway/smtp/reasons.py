"""Why the protocol layer (aiosmtpd, or the session around it) sent a refusal, in words for the
`refused` log line, read from the start of the reply it sent."""

from __future__ import annotations

from gateway import replies

# Why aiosmtpd (or the session) sent a reply, by the start of its text, for the `refused` line.
LIBRARY_REASONS = (
    (str(replies.MESSAGE_TOO_BIG), "the message is over the size limit (SIZE in the EHLO reply)"),
    (str(replies.STARTTLS_FIRST), "the listener requires TLS (require_tls); send STARTTLS first"),
    ("530 5.7.0 Authentication required", "the listener requires AUTH (auth: required)"),
    (str(replies.SHUTTING_DOWN), "the gateway is shutting down"),
    (str(replies.AUTH_SYNTAX), "the AUTH response is not valid base64"),
    (str(replies.UNEXPECTED), "an unexpected error (see the smtp_unexpected_error line)"),
    ("421 4.7.0", "a command was sent too many times on one connection (smtp.max_* limits)"),
    ("538", "AUTH before STARTTLS on a listener that requires TLS for AUTH"),
    ("500 Error: command", "unrecognised command"),
    ("500 Command line too long", "command line too long"),
    ("502 5.5.1 Too many unrecognized", "too many unrecognised commands"),
    ("503", "command out of sequence"),
    ("501", "syntax error in the command's arguments"),
    ("500", "syntax error"),
    ("504", "unrecognised AUTH mechanism"),
    ("554 Command refused due to lack of security", "the TLS handshake failed"),
    ("553 5.6.7", "SMTPUTF8 (non-ASCII addresses) is not offered"),
    ("553", "the address is not valid"),
)


def library_reason(status: str, command: str) -> str:
    """The reason for `status`, a reply the protocol layer sent to `command`."""
    if status.startswith(str(replies.MESSAGE_TOO_BIG)) and command == "MAIL":
        return "the SIZE= declared at MAIL is over the size limit (SIZE in the EHLO reply)"
    for start, reason in LIBRARY_REASONS:
        if status.startswith(start):
            return reason
    return "refused by the SMTP protocol layer"
