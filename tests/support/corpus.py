"""The message corpus in tests/data/corpus: each message with what must arrive, and the tools
to check a delivery against it without the gateway's own MIME code.

`raw_leaves` splits a message on its boundaries by hand and decodes each leaf, so a check can
see the exact bytes of an attached message (the emulator re-serialises those) and any part a
mail client would not call an attachment (a calendar alternative). `smime_verify` runs
`openssl cms -verify` against the corpus CA.
"""

from __future__ import annotations

import base64
import binascii
import email.policy
import os
import quopri
import re
import subprocess
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import yaml

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
SMIME_CA = CORPUS / "smime-ca.pem"

_HEADERS = BytesHeaderParser(policy=email.policy.default)


@dataclass(frozen=True)
class ExpectedAttachment:
    content_type: str
    sha256: str
    size: int
    inline: bool
    content_id: str | None
    name: str | None = None  # exact name
    name_suffix: str | None = None  # a part without a filename: the name must end with this

    def __str__(self) -> str:
        name = self.name if self.name is not None else f"*{self.name_suffix or ''}"
        return f"attachment {name!r} ({self.content_type}, {self.size} bytes)"


@dataclass(frozen=True)
class CorpusMessage:
    name: str
    raw: bytes
    quirks: str
    sender: str
    recipients: tuple[str, ...]
    subject: str
    body_type: str  # "text" | "html"
    contains: tuple[str, ...]
    attachments: tuple[ExpectedAttachment, ...]
    signed: bool


def load_corpus() -> list[CorpusMessage]:
    """Every NAME.eml with its NAME.yaml, in name order."""
    messages = []
    for path in sorted(CORPUS.glob("*.eml")):
        expected: dict[str, Any] = yaml.safe_load(path.with_suffix(".yaml").read_text("utf-8"))
        messages.append(
            CorpusMessage(
                name=path.stem,
                raw=path.read_bytes(),
                quirks=expected.get("quirks", ""),
                sender=expected["sender"],
                recipients=tuple(expected["recipients"]),
                subject=expected["subject"],
                body_type=expected["body"]["type"],
                contains=tuple(expected["body"].get("contains") or ()),
                attachments=tuple(
                    ExpectedAttachment(
                        content_type=item["content_type"],
                        sha256=item["sha256"],
                        size=item.get("size", -1),
                        inline=item["inline"],
                        content_id=item.get("content_id"),
                        name=item.get("name"),
                        name_suffix=item.get("name_suffix"),
                    )
                    for item in expected.get("attachments") or ()
                ),
                signed=bool(expected.get("signed", False)),
            )
        )
    return messages


@dataclass(frozen=True)
class RawLeaf:
    """One non-multipart part: its headers and its content (transfer encoding undone; for an
    attached message, the message's own bytes)."""

    headers: EmailMessage
    content: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get_content_type()

    @property
    def filename(self) -> str | None:
        return self.headers.get_filename()


def _split_entity(data: bytes) -> tuple[bytes, bytes]:
    """(header lines, body) of a MIME entity; the blank line belongs to neither."""
    position = 0
    while True:
        end = data.find(b"\n", position)
        if end == -1:
            return data, b""
        if data[position : end + 1] in (b"\r\n", b"\n"):
            return data[:position], data[end + 1 :]
        position = end + 1


def _decode(body: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(b"".join(body.split()))
        except binascii.Error:
            return body
    if encoding == "quoted-printable":
        return quopri.decodestring(body)
    return body  # 7bit, 8bit, binary, or none given


def raw_leaves(data: bytes) -> list[RawLeaf]:
    """The leaves of a MIME message, found by splitting on its boundaries (no re-serialising)."""
    header_bytes, body = _split_entity(data)
    headers = _HEADERS.parsebytes(header_bytes + b"\r\n")
    assert isinstance(headers, EmailMessage)
    boundary = headers.get_boundary() if headers.get_content_maintype() == "multipart" else None
    if boundary is None:
        if headers.get_content_type() == "message/rfc822":
            return [RawLeaf(headers, body)]
        encoding = str(headers.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        return [RawLeaf(headers, _decode(body, encoding))]
    # The line break before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1).
    delimiter = re.compile(
        rb"(?:\A|\r?\n)--"
        + re.escape(boundary.encode("utf-8", "surrogateescape"))
        + rb"(--)?[ \t]*(?:\r?\n|\Z)"
    )
    leaves: list[RawLeaf] = []
    previous: re.Match[bytes] | None = None
    for match in delimiter.finditer(body):
        if previous is not None:
            leaves.extend(raw_leaves(body[previous.end() : match.start()]))
        if match.group(1):  # the close delimiter
            break
        previous = match
    return leaves


def smime_verify(mime: bytes) -> str | None:
    """None when `openssl cms -verify` accepts the signature against the corpus CA, else why not."""
    result = subprocess.run(
        ["openssl", "cms", "-verify", "-CAfile", str(SMIME_CA), "-out", os.devnull],
        input=mime,
        capture_output=True,
        check=False,
    )
    if result.returncode == 0:
        return None
    return result.stderr.decode("utf-8", "replace").strip() or f"exit {result.returncode}"
