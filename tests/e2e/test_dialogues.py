"""Random SMTP dialogues against a live gateway: whatever a client sends, it gets well-formed
replies without exception text or 451, and every message answered `250 queued` ends delivered
or held (and bounced), never stranded in the spool.

Hypothesis draws whole dialogues: greetings with good and junk arguments, envelopes with
allowed, refused and malformed senders and recipients, generated messages (From variants,
control characters, bare LF, dot lines, long lines, empty bodies), RSET/NOOP/VRFY/HELP, unknown
commands and byte junk, pipelining and hang-ups. Most dialogues carry a transaction that should
be queued. One gateway serves every example; each dialogue runs on a raw socket in a client
thread, because the gateway shares the test's event loop.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from gateway.delivery.engine import DeliveryEvent
from gateway.emulator import Emulator
from gateway.observability.logging import flush_logs
from tests.support.gateway import make_config, run_gateway

SMTP = {
    "hostname": "gateway.test",
    "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
    "max_recipients": 20,  # a few dialogues go over it (452 4.5.3)
    "max_message_size": "64KiB",  # a few generated messages go over it (552 5.3.4)
}
# Loopback may send as contoso (served) and fabrikam (allowed, but no tenant serves it).
CLIENTS = [
    {
        "name": "loopback",
        "networks": ["127.0.0.1"],
        "senders": ["*@contoso.com", "*@sub.contoso.com", "*@fabrikam.com"],
    }
]
DELIVERY = {
    "retry_initial": "1s",
    "retry_max": "2s",
    "concurrency": 8,
    "mailbox_rate": 0,
    "postmaster": "postmaster@contoso.com",
}

IO_TIMEOUT = 10.0  # seconds a client waits for any reply: a gateway that hangs fails
SETTLE = 5.0  # seconds for a queued message to end delivered or held (it takes milliseconds)
FINAL = ("delivered", "held")
CRASHES = ("smtp_unexpected_error", "delivery_crashed")  # logged with a traceback


# -- strategies ---------------------------------------------------------------------------------


def mostly(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int = 4
) -> st.SearchStrategy[Any]:
    """`common` `odds` times out of `odds + 1`; shrinking goes towards `common`."""
    return st.sampled_from([common] * odds + [rare]).flatmap(lambda chosen: chosen)


def sometimes(value: Any, otherwise: Any, odds: int = 4) -> st.SearchStrategy[Any]:
    return mostly(st.just(value), st.just(otherwise), odds)


def lines_of(*choices: bytes | str) -> st.SearchStrategy[bytes]:
    return st.sampled_from([c.encode() if isinstance(c, str) else c for c in choices])


# Characters that matter to address and header parsers: atext, specials, quotes, comments.
SPECIALS = "aZ09.-_+=!#'`~{}|/?^$%&*@<>()[]\\\":;, \t"
junk_text = st.text(SPECIALS, max_size=40)
# Any byte but CR and LF (a line of its own), and any text but CR and LF, UTF-8 encoded.
raw_line = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=60).map(
    lambda text: text.encode("latin-1")
)
unicode_line = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=60).map(
    str.encode
)
# A header value with control characters, NUL, DEL and 8-bit bytes.
control_value = st.lists(
    lines_of(
        b"\x00",
        b"\x01",
        b"\x07",
        b"\x0b",
        b"\x0c",
        b"\x1b",
        b"\x7f",
        b"\x80",
        b"\xff",
        b"\xc3\xa9",
        b"\r",
        b"\t",
        b" ",
        b"a",
        b"scanner@contoso.com",
    ),
    min_size=1,
    max_size=8,
).map(b"".join)

# -- the envelope
allowed = st.sampled_from(
    ["scanner@contoso.com", "erp@contoso.com", "mfp.3f@sub.contoso.com", "Scanner@CONTOSO.com"]
)
odd_path = st.one_of(
    junk_text,
    st.sampled_from(
        [
            "<ceo@example.org>",  # not this client's
            "<x@fabrikam.com>",  # the client's, but no tenant serves it
            "<>",
            "<a@>",
            "<@contoso.com>",
            "scanner@contoso.com",
            "<scanner@contoso.com",
            '<"odd name"@contoso.com>',
            "<@relay.example:a@contoso.com>",
            "<a@[192.0.2.1]>",
            "<jörg@contoso.com>",
            "<scanner@contoso.com)<ceo@contoso.com>",
            "<a..b@contoso.com>",
            "<scanner@contoso.com>(comment)",
            "",
            " <scanner@contoso.com>",
            "<" + "l" * 80 + "@contoso.com>",
        ]
    ),
)
mail_params = st.lists(
    st.one_of(
        st.integers(0, 150_000).map(lambda size: f"SIZE={size}"),
        st.sampled_from(
            [
                "SIZE=abc",
                "SIZE=",
                "SIZE=99999999999999999999",
                "BODY=8BITMIME",
                "BODY=7BIT",
                "BODY=BINARYMIME",
                "SMTPUTF8",
                "FOO=bar",
                "RET=HDRS",
                "size=10",
            ]
        ),
    ),
    min_size=1,
    max_size=2,
)
mail_command = st.builds(
    lambda verb, path, params: " ".join([verb + path, *params]).encode(),
    mostly(
        st.just("MAIL FROM:"),
        st.sampled_from(
            ["mail from:", "MAIL FROM: ", "MAIL FROM ", "MAIL ", "MAIL TO:", "Mail From:"]
        ),
        odds=8,
    ),
    mostly(allowed.map(lambda address: f"<{address}>"), odd_path, odds=6),
    mostly(st.just([]), mail_params),
)
recipient = st.sampled_from(
    [
        "<alice@contoso.com>",
        "<bob@fabrikam.example>",
        "<carol@sub.contoso.com>",
        "<Dave@Contoso.COM>",
        "<helpdesk@intranet>",
    ]
)  # Graph refuses it: held and bounced
odd_recipient = st.one_of(
    junk_text,
    st.sampled_from(
        [
            "<>",
            "<a@>",
            "alice",
            "<a b@contoso.com>",
            "<@relay:a@contoso.com>",
            "<alice@contoso.com",
            "<alice@contoso.com> NOTIFY=NEVER",
            "<postmaster>",
            "<jörg@contoso.com>",
            "",
            "<alice@contoso.com)<eve@example.org>",
            '<"x y"@contoso.com>',
        ]
    ),
)
rcpt_command = st.builds(
    lambda verb, path: (verb + path).encode(),
    mostly(st.just("RCPT TO:"), st.sampled_from(["rcpt to:", "RCPT TO: ", "RCPT ", "RCPT FROM:"])),
    mostly(recipient, odd_recipient),
)

# -- the message
from_value = st.one_of(
    allowed,
    allowed.map(lambda address: f"Scanner <{address}>"),
    allowed.map(lambda address: f'"Scan, Dept." <{address}>'),
    allowed.map(lambda address: f"=?utf-8?q?Sc=C3=A4nner?= <{address}>"),
    allowed.map(lambda address: f"{address} (the scanner)"),
).map(str.encode)
odd_from_value = st.one_of(
    lines_of(
        ".:",
        ":",
        ".",
        "<>",
        "@",
        '"',
        "",
        " ",
        ";",
        "<",
        ">",
        "()",
        "(",
        "\\",
        ",",
        "::",
        "a:;",
        "undisclosed-recipients:;",
        "=?utf-8?b?!!!?=",
        "=?x?q?a@contoso.com?= <ceo@x.org>",
        "ceo@example.org",
        "CEO <ceo@example.org>",
        "scanner@contoso.com)<ceo@example.org>",
        "scanner@contoso.com, erp@contoso.com",
        "scanner@contoso.com, ceo@example.org",
        '"scanner@contoso.com" <ceo@example.org>',
        "<scanner@contoso.com",
        "scanner@",
        "a@b@contoso.com",
        "scanner@[127.0.0.1]",
        "Scanner <scanner@contoso.com>,",
        "group: scanner@contoso.com;",
        "Scanner <scanner@contoso.com> junk",
    ),
    junk_text.map(str.encode),
    unicode_line,
    control_value,
    allowed.map(lambda address: address.encode() + b"\x00"),
)
from_header = st.builds(
    lambda name, space, value, fold: [name + b":" + space + value, *fold],
    mostly(st.just(b"From"), lines_of(b"FROM", b"from", b"From ")),
    lines_of(b" ", b"", b"\t", b"  "),
    mostly(from_value, odd_from_value),
    mostly(
        st.just([]),
        st.builds(
            lambda indent, more: [indent + more],
            lines_of(b" ", b"\t"),
            mostly(st.just(b"(continued)"), odd_from_value),
        ),
        odds=8,
    ),
)
odd_from_headers = st.builds(
    lambda froms, sender: [line for lines in froms for line in lines] + sender,
    mostly(
        st.lists(from_header, min_size=1, max_size=1), st.lists(from_header, max_size=3), odds=8
    ),
    mostly(st.just([]), mostly(from_value, odd_from_value).map(lambda v: [b"Sender: " + v])),
)
other_headers = st.builds(
    lambda subject, message_id, date, mime, extra, odd: [
        b"To: Alice <alice@contoso.com>",
        b"Subject: " + subject,
        *message_id,
        *date,
        *mime,
        *(name + b": " + value for name, value in extra),
        *odd,
    ],
    mostly(st.just(b"Scan from MFP-3F"), st.one_of(raw_line, unicode_line, control_value)),
    st.lists(
        st.text("abcxyz0189.", min_size=1, max_size=20).map(
            lambda local: b"Message-ID: <%s@mfp.contoso.com>" % local.encode()
        ),
        max_size=1,
    ),
    st.lists(
        lines_of(b"Mon, 1 Jan 2024 10:00:00 +0000", b"yesterday", b"", b"Mon, 99 Foo 1 25:61").map(
            lambda date: b"Date: " + date
        ),
        max_size=1,
    ),
    mostly(
        st.just([]),
        st.builds(
            lambda kind, encoding: [
                b"MIME-Version: 1.0",
                b"Content-Type: " + kind,
                b"Content-Transfer-Encoding: " + encoding,
            ],
            lines_of(
                b"text/plain; charset=utf-8",
                b"text/html",
                b"text/plain; charset=nonesuch",
                b"multipart/mixed",
                b"application/octet-stream",
                b"junk",
                b"",
                b'text/plain; charset="utf-8',
                b'image/png; name="scan\x00.png"',
            ),
            lines_of(b"7bit", b"8bit", b"base64", b"quoted-printable", b"x-unknown", b""),
        ),
    ),
    mostly(
        st.just([]),
        st.lists(
            st.tuples(
                st.text("abcXYZ019-", min_size=1, max_size=20).map(
                    lambda name: b"X" + name.encode()
                ),
                st.one_of(raw_line, control_value, unicode_line),
            ),
            max_size=4,
        ),
    ),
    mostly(
        st.just([]),
        st.lists(
            lines_of(
                b"no colon in this line",
                b": no name",
                b"X-Long: " + b"h" * 3000,
                b"\x00: nul name",
                b"X-8bit: \xe9t\xe9",
            ),
            max_size=1,
        ),
        odds=8,
    ),
)
body_line = mostly(
    st.text("abcxyzABC0189 ,.", max_size=70).map(str.encode),
    st.one_of(
        lines_of(
            b".",
            b"..",
            b".A line that starts with a dot",
            b"",
            b" ",
            b"\x00",
            b"\xc3\xa9t\xc3\xa9 8-bit",
            b"--b1",
            b"--b1--",
            b"\r",
            b"a\rb",
            b"=?utf-8?q?x?=",
            b"begin 644 scan.pdf",
        ),
        st.integers(999, 30_000).map(lambda size: b"Q" * size),  # whole PDFs on one line
        raw_line,
    ),
)
body_lines = st.lists(body_line, max_size=8).map(lambda lines: [b"", *lines])
multipart_body = st.builds(
    lambda attachment, end: [
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/mixed; boundary="b1"',
        b"",
        b"--b1",
        b"Content-Type: text/plain",
        b"",
        b"hello",
        b"--b1",
        b"Content-Type: application/pdf",
        b"Content-Transfer-Encoding: base64",
        b"",
        attachment,
        *end,
    ],
    lines_of(b"JVBERi0xLjQK", b"!!not base64!!", b"JVBER", b""),
    st.sampled_from([[b"--b1--"], [], [b"--b1"], [b"--b2--"]]),
)


def within_size(lines: list[bytes]) -> list[bytes]:
    """Drop trailing lines until the message is well within max_message_size."""
    while sum(map(len, lines)) > 60_000:
        lines = lines[:-1]
    return lines


line_end = lines_of(b"\r\n", b"\n")
line_ends = mostly(st.just(b"\r\n"), lines_of(b"\n", b"mixed"))
ends_a_line = sometimes(True, False, odds=8)


@st.composite
def with_endings(draw: st.DrawFn, lines: list[bytes]) -> bytes:
    """The lines joined with CRLF, sometimes bare LF or a mix; sometimes no final line end."""
    ending = draw(line_ends)
    if ending == b"mixed":
        endings = draw(st.lists(line_end, min_size=len(lines), max_size=len(lines)))
        return b"".join(line + end for line, end in zip(lines, endings, strict=True))
    text = b"".join(line + ending for line in lines)
    return text if draw(ends_a_line) else text.rstrip(b"\r\n")


# What the client means to send after DATA (dot-stuffing is added when it is sent).
clean_message = st.builds(
    lambda a, b, c: within_size(a + b + c),
    from_value.map(lambda value: [b"From: " + value]),
    other_headers,
    body_lines,
).flatmap(with_endings)
message = mostly(
    st.builds(
        lambda a, b, c: a + b + c,
        odd_from_headers,
        other_headers,
        mostly(body_lines, st.one_of(multipart_body, st.just([]))),
    ).flatmap(with_endings),
    st.one_of(st.binary(max_size=300), lines_of(b"", b"\r\n", b".", b"..", b"\r\n\r\n", b"\n")),
)


# -- dialogue steps -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command line; one reply."""

    line: bytes


@dataclass(frozen=True)
class Pipeline:
    """Several command lines in one write (RFC 2920), then their replies in order."""

    lines: tuple[bytes, ...]


@dataclass(frozen=True)
class Transaction:
    """(RSET,) MAIL, RCPTs and DATA (in one write when `pipelined`), the message after a 354,
    and optionally one more command in the same write as the final dot."""

    mail: bytes
    rcpts: tuple[bytes, ...]
    body: bytes
    pipelined: bool = False
    after_dot: bytes | None = None
    reset: bool = False  # RSET first, as most clients do after a failed transaction


@dataclass(frozen=True)
class Hangup:
    """The client goes away without QUIT: `close` at once, after `half-line` of a command, after
    a command it does not wait for (`unanswered`), or in the middle of a message (`mid-data`)."""

    how: str


def safe(line: bytes) -> bytes:
    """`line`, unless aiosmtpd would read it as DATA or QUIT (steps send those on purpose)."""
    verb, _, rest = line.partition(b" ")
    return b"X" + line if verb.upper() in (b"DATA", b"QUIT") and not rest.strip() else line


good_greeting = lines_of(b"EHLO mfp-3f.contoso.com", b"HELO mfp", b"ehlo [127.0.0.1]")
greeting = mostly(
    good_greeting,
    st.one_of(
        lines_of(
            b"NOOP",
            b"EHLO",
            b"HELO",
            b"EHLO  ",
            b"HELO a b c",
            b"EHLO \x00",
            b"EHLO " + b"h" * 600,
            "EHLO jörg",
        ),
        junk_text.map(lambda text: b"EHLO " + text.encode()),
    ),
)
# Anything but DATA and QUIT, whose replies change what follows.
other_command = st.one_of(
    lines_of(
        b"RSET",
        b"NOOP",
        b"HELP",
        b"HELP MAIL",
        b"HELP nothing",
        b"VRFY",
        b"VRFY postmaster",
        b"EXPN staff",
        b"STARTTLS",
        b"AUTH PLAIN AGFiAGM=",
        b"AUTH LOGIN",
        b"NOOP with args",
        b"RSET now",
        b"QUIT please",
        b"TURN",
        b"BDAT 10 LAST",
        b"DATA now",
        b"",
        b" ",
        b"mail",
        b"rcpt",
        b"\x00\x01",
        b"\xff\xfe junk",
        b"X" * 600,
        b"MAIL FROM:<" + b"x" * 1200 + b"@contoso.com>",
    ),
    junk_text.map(lambda text: b"VRFY " + text.encode()),
    greeting,
    mail_command,
    rcpt_command,
    raw_line,
).map(safe)
transaction = st.builds(
    Transaction,
    mail=mail_command,
    rcpts=mostly(
        st.lists(rcpt_command, min_size=1, max_size=3), st.lists(rcpt_command, max_size=25)
    ).map(tuple),
    body=message,
    pipelined=st.booleans(),
    after_dot=mostly(st.none(), lines_of(b"NOOP", b"RSET", b"MAIL FROM:<x@y>")),
    reset=sometimes(True, False, odds=2),
)
clean_transaction = st.builds(  # one the gateway should queue: only the message is odd
    Transaction,
    mail=allowed.map(lambda address: b"MAIL FROM:<%s>" % address.encode()),
    rcpts=st.lists(
        recipient.map(lambda path: b"RCPT TO:" + path.encode()), min_size=1, max_size=3
    ).map(tuple),
    body=clean_message,
    pipelined=st.booleans(),
    reset=st.just(True),
)
step = mostly(
    transaction,
    st.one_of(
        other_command.map(Command),
        st.lists(other_command, min_size=2, max_size=6).map(lambda lines: Pipeline(tuple(lines))),
        message.map(lambda body: Transaction(b"", (), body)),  # a lone DATA
    ),
    odds=3,
)
ending = mostly(
    st.just(Command(b"QUIT")),
    st.sampled_from(
        [Hangup("close"), Hangup("half-line"), Hangup("unanswered"), Hangup("mid-data")]
    ),
)


@st.composite
def dialogues(draw: st.DrawFn) -> list[Any]:
    steps: list[Any] = [Command(draw(mostly(good_greeting, greeting, odds=12)))]
    clean = draw(st.integers(0, 6)) > 0  # (and shrinks to without, when that still fails)
    steps += draw(st.lists(step, min_size=0 if clean else 1, max_size=3))
    if clean:  # most dialogues carry a transaction that should end 250 queued
        steps.insert(draw(st.integers(1, len(steps))), draw(clean_transaction))
    return [*steps, draw(ending)]


# -- playing a dialogue -------------------------------------------------------------------------

# RFC 5321 4.2: a three-digit code, then a space or a dash and text (HT and printable ASCII).
REPLY_LINE = re.compile(rb"[2-5][0-9][0-9](?:[ -][\t\x20-\x7e]*)?\r\n")
# What a Python exception looks like: a class name, aiosmtpd's "Error: (Class) text" form, a
# traceback or a repr. aiosmtpd's fixed texts ("500 Error: bad syntax") do not match.
EXCEPTION_TEXT = re.compile(
    r"Traceback|\b[A-Z]\w*(?:Error|Exception|Warning|Exit|Interrupt)\b|Error: \(|"
    r"object at 0x|\bb'|\\x[0-9a-f]{2}|\bNone\b"
)
# aiosmtpd's replies that quote the client's own words.
ECHOES = (
    re.compile(r'(?<=command ").*(?=" not recognized)'),
    re.compile(r"(?<=Could not VRFY ).*"),
)
CLOSING = (b"221", b"421", b"502 5.5.1 Too many unrecognized")
QUEUED = re.compile(rb"250 .*queued as (\S+)")


class Problem(AssertionError):
    """What a user of the gateway would notice in a dialogue."""


@dataclass
class Wire:
    """A client connection: sends, reads replies, checks each, and keeps the transcript."""

    sock: socket.socket
    transcript: list[tuple[bytes, bytes]] = field(default_factory=list)
    queued: list[str] = field(default_factory=list)
    closed: bool = False  # the gateway said goodbye (221, 421, 502 …) and hung up

    def __post_init__(self) -> None:
        self.file = self.sock.makefile("rb")

    def fail(self, what: str) -> Problem:
        shown = "\n".join(f"  C: {sent!r}\n  S: {reply!r}" for sent, reply in self.transcript[-12:])
        return Problem(f"{what}\nlast exchanges:\n{shown}")

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as error:
            raise self.fail(f"the gateway hung up before {data[:80]!r} ({error})") from None

    def reply(self, to: bytes) -> bytes:
        """One reply (all its lines) to `to`, checked."""
        lines: list[bytes] = []
        while not lines or lines[-1][3:4] == b"-":
            try:
                line = self.file.readline(100_000)
            except TimeoutError:
                raise self.fail(f"no reply to {to[:80]!r} within {IO_TIMEOUT} s") from None
            except OSError as error:
                raise self.fail(
                    f"the gateway hung up instead of answering {to[:80]!r} ({error})"
                ) from None
            if not line:
                raise self.fail(
                    f"the gateway hung up instead of answering {to[:80]!r}"
                    + (f" (after {b''.join(lines)!r})" if lines else "")
                )
            lines.append(line)
        reply = b"".join(lines)
        self.transcript.append((to[:200], reply))
        self.check(to, lines)
        if reply.startswith(CLOSING):
            self.closed = True
        return reply

    def check(self, to: bytes, lines: list[bytes]) -> None:
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            if (
                not REPLY_LINE.fullmatch(line)
                or line[:3] != lines[0][:3]
                or (line[3:4] == b"-") == last
            ):
                raise self.fail(f"malformed reply line {line!r} to {to[:80]!r}")
        if lines[0].startswith(b"451"):
            raise self.fail(f"451 (the gateway's 'unexpected') to {to[:80]!r}: {lines[0]!r}")
        text = b"".join(lines).decode("ascii")
        for echo in ECHOES:
            text = echo.sub("…", text)
        if found := EXCEPTION_TEXT.search(text):
            raise self.fail(f"exception text {found.group()!r} on the wire: {text!r}")
        if match := QUEUED.match(lines[0]):
            self.queued.append(match[1].decode())

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply(line)

    def message(self, body: bytes, after_dot: bytes | None = None) -> None:
        """The message after a 354, dot-stuffed, then its reply (and `after_dot`'s)."""
        self.send(stuffed(body) + (after_dot + b"\r\n" if after_dot else b""))
        self.reply(b"<message: %d bytes>" % len(body))
        if after_dot and not self.closed:
            self.reply(after_dot)


def stuffed(body: bytes) -> bytes:
    """`body` as sent after DATA: a dot doubled at every line start (after CRLF or a bare LF,
    which the gateway reads as a line end too), then CRLF.CRLF."""
    lines = re.split(rb"(?<=\n)", body)
    data = b"".join(b"." + line if line.startswith(b".") else line for line in lines)
    return data + (b".\r\n" if not data or data.endswith(b"\r\n") else b"\r\n.\r\n")


def transact(wire: Wire, step: Transaction) -> None:
    commands = [step.mail, *step.rcpts] if step.mail else []
    if step.reset:
        commands.insert(0, b"RSET")
    if step.pipelined:
        wire.send(b"".join(line + b"\r\n" for line in [*commands, b"DATA"]))
        for line in commands:
            wire.reply(line)
            if wire.closed:
                return
        data = wire.reply(b"DATA")
    else:
        for line in commands:
            wire.command(line)
            if wire.closed:
                return
        data = wire.command(b"DATA")
    if data.startswith(b"354"):
        wire.message(step.body, step.after_dot)


def play_step(wire: Wire, item: Any) -> None:
    if isinstance(item, Command):
        wire.command(item.line)
    elif isinstance(item, Pipeline):
        wire.send(b"".join(line + b"\r\n" for line in item.lines))
        for line in item.lines:
            wire.reply(line)
            if wire.closed:
                return
    elif isinstance(item, Transaction):
        transact(wire, item)
    elif item.how == "half-line":
        wire.send(b"MAIL FROM:<scanner@con")
    elif item.how == "unanswered":
        wire.send(b"NOOP\r\n")
    elif item.how == "mid-data" and wire.command(b"DATA").startswith(b"354"):
        wire.send(b"From: scanner@contoso.com\r\nSubject: cut\r\n\r\nhalf a messa")


def play(address: tuple[str, int], steps: Iterable[Any]) -> Wire:
    """Run one dialogue; raises `Problem` on anything a user would notice."""
    with socket.create_connection(address, timeout=IO_TIMEOUT) as sock:
        wire = Wire(sock)
        try:
            if not wire.reply(b"<connect>").startswith(b"220"):
                raise wire.fail("no 220 greeting")
            for item in steps:
                if wire.closed:
                    break
                play_step(wire, item)
            if wire.closed and (rest := wire.file.read()):  # after goodbye, nothing more
                raise wire.fail(f"replies nobody asked for after goodbye: {rest[:200]!r}")
        finally:
            wire.file.close()  # (the socket closes only once its file is closed too)
        return wire


# -- what happens to the mail -------------------------------------------------------------------


class Outcomes:
    """The latest delivery result per queue ID, for client threads to wait on."""

    def __init__(self) -> None:
        self._results: dict[str, str] = {}
        self._changed = threading.Condition()

    def observe(self, delivery: DeliveryEvent) -> None:
        """An engine observer (called on the event loop)."""
        with self._changed:
            self._results[delivery.queue_id] = delivery.result
            self._changed.notify_all()

    def settle(
        self, ids: Iterable[str], timeout: float, give_up: Callable[[], bool] = lambda: False
    ) -> dict[str, str | None]:
        """Wait until every one of `ids` is delivered or held; the results then (or at timeout,
        or once `give_up()`, asked every 50 ms: a crash after a hold reports no result)."""
        wanted = list(ids)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            with self._changed:
                if self._changed.wait_for(
                    lambda: all(self._results.get(i) in FINAL for i in wanted), min(left, 0.05)
                ):
                    break
            if give_up():
                break
        with self._changed:
            return {queue_id: self._results.get(queue_id) for queue_id in wanted}


class CrashLog:
    """The crashes (`CRASHES`, logged with a traceback) in the test's log so far, read on from
    where the last look ended: `logged()` parses the whole log, too slow once per example."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream
        self._read = 0
        self.entries: list[dict[str, Any]] = []

    def look(self) -> list[dict[str, Any]]:
        assert flush_logs(), "the log writer did not drain"
        text = self._stream.getvalue()
        new, self._read = text[self._read :], len(text)
        self.entries += [
            entry
            for line in new.splitlines()
            if any(name in line for name in CRASHES)
            if (entry := json.loads(line)).get("event") in CRASHES
        ]
        return self.entries


def spool_ids(spool: Path, *states: str) -> set[str]:
    return {path.stem for state in states for path in (spool / state).glob("*.msg")}


async def test_random_dialogues_get_clean_replies_and_queued_mail_settles(
    tmp_path: Path, emulator: Emulator, logged: Any, _debug_logs_hold_no_secrets: io.StringIO
) -> None:
    config = make_config(tmp_path, emulator, smtp=SMTP, clients=CLIENTS, delivery=DELIVERY)
    spool = tmp_path / "spool"
    crashes = CrashLog(_debug_logs_hold_no_secrets)
    tally = {"examples": 0, "with queued mail": 0}
    async with run_gateway(config) as gateway:
        assert gateway.gateway.engine is not None
        outcomes = Outcomes()
        gateway.gateway.engine.observers.append(outcomes.observe)
        address = gateway.smtp_address

        @settings(max_examples=30, deadline=None)
        @given(steps=dialogues())
        def any_dialogue(steps: list[Any]) -> None:
            before = len(crashes.look())
            wire = play(address, steps)
            tally["examples"] += 1
            event(f"messages queued: {min(len(wire.queued), 2)}")
            if wire.queued:
                tally["with queued mail"] += 1
            results = outcomes.settle(wire.queued, SETTLE, lambda: len(crashes.look()) > before)
            if new := [
                {key: entry.get(key) for key in ("event", "queue_id", "error_type", "where")}
                for entry in crashes.look()[before:]
            ]:
                raise wire.fail(f"the gateway logged a crash: {new}")
            for queue_id, result in results.items():
                state = gateway.gateway.spool.state_of(queue_id)
                if result not in FINAL:
                    raise wire.fail(
                        f"{queue_id} not delivered or held after {SETTLE} s: "
                        f"last result {result}, in {state}/"
                    )
                if result == "held" and state != "hold":
                    raise wire.fail(f"{queue_id} held, but the spool has it in {state}/")

        await asyncio.get_running_loop().run_in_executor(gateway.clients, any_dialogue)
        # Bounces are queued before their message is reported held: wait for them too.
        waiting = spool_ids(spool, "queue", "active")
        results = await asyncio.to_thread(outcomes.settle, waiting, SETTLE)
        assert all(result in FINAL for result in results.values()), results
    assert spool_ids(spool, "queue", "active") == set()  # nothing stranded after the stop
    assert [logged(name) for name in CRASHES] == [[], []]  # nor a crash noticed late
    # The strategy must keep exercising whole transactions, not just junk.
    assert tally["with queued mail"] * 2 >= tally["examples"], tally
