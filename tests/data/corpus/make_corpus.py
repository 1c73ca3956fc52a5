"""Write the message corpus: `NAME.eml` (bytes as the device or application sends them) and
`NAME.yaml` (what must arrive), for `tests/e2e/test_corpus.py`.

Every message is written out by hand below, header line by header line, so each quirk is in
plain sight; the expectations come from the same values the message was built from (subject
text, body text, attachment payloads and their SHA-256), never from parsing the result. Binary
payloads are synthetic but shaped like the real thing (PDF objects and xref, TIFF IFD, JPEG
markers, real PNG and ZIP files) and come from fixed seeds, so a rerun writes the same bytes.
The S/MIME message is the exception: with --resign (or when it is missing) `openssl cms -sign`
signs it again with a throwaway CA and signer made afresh (valid 2024-2124), so its bytes
change; the CA certificate goes to `smime-ca.pem`, the private keys stay in a temporary
directory that is deleted. Without --resign the committed signed message is kept as it is.

Run from the repository root:  .venv/bin/python tests/data/corpus/make_corpus.py [--resign]
"""
# Non-Latin look-alikes (Cyrillic letters, full-width digits, Arabic-Indic digits, dashes)
# are the point of this file, so RUF001 is off here.
# ruff: noqa: RUF001 - the corpus holds look-alike characters on purpose

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import hashlib
import io
import quopri
import random
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).resolve().parent
CRLF = b"\r\n"


# -- expectations ---------------------------------------------------------------------------


@dataclass
class Att:
    """An attachment as the converter must deliver it."""

    content_type: str
    payload: bytes
    name: str | None = None
    name_suffix: str | None = None  # for parts without a filename (attached messages, calendars)
    inline: bool = False
    content_id: str | None = None

    def expectation(self) -> dict[str, object]:
        result: dict[str, object] = {}
        if self.name is not None:
            result["name"] = self.name
        if self.name_suffix is not None:
            result["name_suffix"] = self.name_suffix
        result.update(
            content_type=self.content_type,
            size=len(self.payload),
            sha256=hashlib.sha256(self.payload).hexdigest(),
            inline=self.inline,
            content_id=self.content_id,
        )
        return result


@dataclass
class Msg:
    name: str
    quirks: str
    sender: str
    recipients: list[str]
    subject: str
    body_type: str  # text | html
    contains: list[str]
    raw: bytes
    attachments: list[Att] = field(default_factory=list)
    signed: bool = False

    def expectation(self) -> dict[str, object]:
        result: dict[str, object] = {
            "quirks": self.quirks,
            "sender": self.sender,
            "recipients": self.recipients,
            "subject": self.subject,
            "body": {"type": self.body_type, "contains": self.contains},
            "attachments": [a.expectation() for a in self.attachments],
        }
        if self.signed:
            result["signed"] = True
        return result


# -- building blocks --------------------------------------------------------------------------


def head(*fields: str | bytes) -> bytes:
    """Header lines (or any lines), each ended with CRLF. A str must be ASCII."""
    return b"".join((f.encode("ascii") if isinstance(f, str) else f) + CRLF for f in fields)


def entity(headers: bytes, body: bytes) -> bytes:
    """A MIME entity: its header lines, the blank line, its body."""
    return headers + CRLF + body


def multipart(boundary: str, parts: list[bytes], preamble: bytes = b"") -> bytes:
    """A multipart body. The CRLF before each delimiter belongs to the delimiter, so each part's
    body ends exactly where its bytes end."""
    out = preamble
    for part in parts:
        out += b"--" + boundary.encode("ascii") + CRLF + part + CRLF
    return out + b"--" + boundary.encode("ascii") + b"--" + CRLF


def b64(data: bytes, width: int = 76) -> bytes:
    text = base64.b64encode(data)
    return CRLF.join(text[i : i + width] for i in range(0, len(text), width))


def qp(text: str, charset: str) -> bytes:
    """Quoted-printable of `text` (LF line ends in, CRLF out)."""
    return quopri.encodestring(text.encode(charset)).replace(b"\n", CRLF)


def crlf(text: str, charset: str) -> bytes:
    return text.replace("\n", "\r\n").encode(charset)


_Q_SAFE = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def q_word(text: str, charset: str) -> str:
    """One RFC 2047 Q encoded word (safe in phrases and unstructured headers)."""
    encoded = "".join(
        "_" if byte == 0x20 else chr(byte) if byte in _Q_SAFE else f"={byte:02X}"
        for byte in text.encode(charset)
    )
    word = f"=?{charset}?Q?{encoded}?="
    assert len(word) <= 75, word  # RFC 2047 section 2
    return word


def b_word(text: str, charset: str) -> str:
    word = f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode('ascii')}?="
    assert len(word) <= 75, word  # RFC 2047 section 2
    return word


def words(chunks: list[str], charset: str, kind: str = "B") -> str:
    """A header value of several encoded words, one per line (folded): a subject split the
    way mailers split it, each word a whole run of characters."""
    make = b_word if kind == "B" else q_word
    return "\r\n ".join(make(chunk, charset) for chunk in chunks)


def pct(text: str) -> str:
    """RFC 2231 value-chars (UTF-8, percent-encoded)."""
    return urllib.parse.quote(text, safe="")


# -- synthetic payloads -----------------------------------------------------------------------


def noise(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def fake_pdf(seed: int, image_bytes: int, producer: str) -> bytes:
    """A one-page PDF holding one (random) DCT image, with a correct xref table."""
    image = noise(seed, image_bytes)
    content = b"q 595 0 0 842 0 0 cm /Im0 Do Q"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /XObject /Subtype /Image /Width 2480 /Height 3508 /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n"
        % len(image)
        + image
        + b"\nendstream",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Producer ("
        + producer.encode("ascii")
        + b") /CreationDate (D:20240315101523+01'00') >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def fake_tiff(seed: int, strip_bytes: int, width: int = 1728, height: int = 2292) -> bytes:
    """A little-endian bilevel TIFF (CCITT G4 claimed) with one random strip."""
    strip = noise(seed, strip_bytes)
    entries = [  # tag, type (3 SHORT, 4 LONG, 5 RATIONAL), count, value
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 1),
        (259, 3, 1, 4),
        (262, 3, 1, 0),
        (273, 4, 1, 0),  # strip offset, set below
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, len(strip)),
        (282, 5, 1, 0),  # x resolution, rational stored after the IFD
        (283, 5, 1, 0),
        (296, 3, 1, 2),
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    rational = 8 + ifd_size
    data_offset = rational + 16
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, given in entries:
        value = given
        if tag == 273:
            value = data_offset
        elif tag in (282, 283):
            value = rational + (0 if tag == 282 else 8)
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<IIII", 200, 1, 200, 1) + strip


def fake_jpeg(seed: int, scan_bytes: int, width: int = 1654, height: int = 2339) -> bytes:
    """JFIF markers around a random, correctly byte-stuffed entropy-coded segment."""
    rng = random.Random(seed)
    app0 = b"JFIF\x00\x01\x01\x01\x01\x2c\x01\x2c\x00\x00"
    dqt = b"\x00" + bytes(rng.randrange(1, 100) for _ in range(64))
    sof = b"\x08" + struct.pack(">HH", height, width) + b"\x01\x01\x11\x00"
    sos = b"\x01\x01\x00\x00\x3f\x00"
    scan = noise(seed + 1, scan_bytes).replace(b"\xff", b"\xff\x00")

    def segment(marker: int, body: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    return (
        b"\xff\xd8"
        + segment(0xE0, app0)
        + segment(0xDB, dqt)
        + segment(0xC0, sof)
        + segment(0xDA, sos)
        + scan
        + b"\xff\xd9"
    )


def png(seed: int, width: int, height: int) -> bytes:
    """A real (decodable) RGB PNG."""
    rng = random.Random(seed)
    rows = b"".join(b"\x00" + rng.randbytes(3 * width) for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def zip_file(members: dict[str, bytes]) -> bytes:
    """A real ZIP with fixed timestamps (so reruns are identical)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 3, 15, 10, 15, 0)), data)
    return buffer.getvalue()


# -- scan to email ----------------------------------------------------------------------------


def hp_laserjet_scan_pdf() -> Msg:
    pdf = fake_pdf(101, 180_000, "HP LaserJet MFP M428fdw")
    boundary = "----=_Part_17_1968614557.1710495321004"
    text = (
        "This document was scanned and sent to you by HP LaserJet MFP M428fdw.\n"
        "Pages: 3\nResolution: 300 dpi\n"
    )
    raw = entity(
        head(
            'From: "HP LaserJet MFP M428fdw" <scanner@contoso.com>',
            "To: alice@contoso.com",
            "Subject: Scanned document from HP LaserJet MFP M428fdw",
            "Message-ID: <1968614557.17.1710495321004@NPI3A5F2B>",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; ",
            f'\tboundary="{boundary}"',
            "X-Mailer: HP LaserJet MFP",
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=us-ascii",
                        "Content-Transfer-Encoding: 7bit",
                    ),
                    crlf(text, "ascii"),
                ),
                entity(
                    head(
                        'Content-Type: application/pdf; name="scan_2024-03-15_101523.pdf"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="scan_2024-03-15_101523.pdf"',
                    ),
                    b64(pdf),
                ),
            ],
        ),
    )
    return Msg(
        "hp-laserjet-scan-pdf",
        "HP scan: no Date header; boundary starts with dashes and holds '=' and '.', "
        "folded onto a tab-indented line; 180 KB PDF",
        "scanner@contoso.com",
        ["alice@contoso.com"],
        "Scanned document from HP LaserJet MFP M428fdw",
        "text",
        ["scanned and sent to you by HP LaserJet MFP M428fdw", "Resolution: 300 dpi"],
        raw,
        [Att("application/pdf", pdf, name="scan_2024-03-15_101523.pdf")],
    )


def hp_scan_octet_stream_no_body() -> Msg:
    jpeg = fake_jpeg(102, 50_000)
    raw = entity(
        head(
            "From: HP Digital Sender Flow 8500 <scanner@contoso.com>",
            'To: "Scans Floor 2" <scans-floor2@contoso.com>',
            "Subject: Scan to Email",
            "Date: Fri, 15 Mar 2024 10:20:11 +0100",
            "Message-ID: <HPDS8500.20240315102011.0001@contoso.com>",
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=HPBoundary0001",
        ),
        multipart(
            "HPBoundary0001",
            [
                entity(
                    head(
                        "Content-Type: application/octet-stream; name=scan0001.jpg",
                        "Content-Transfer-Encoding: base64",
                    ),
                    b64(jpeg),
                )
            ],
        ),
    )
    return Msg(
        "hp-scan-octet-stream-no-body",
        "HP scan: no text part at all; the JPEG is application/octet-stream, named only by an "
        "unquoted Content-Type name= (no Content-Disposition); unquoted boundary",
        "scanner@contoso.com",
        ["scans-floor2@contoso.com"],
        "Scan to Email",
        "text",
        [],
        raw,
        [Att("application/octet-stream", jpeg, name="scan0001.jpg")],
    )


def xerox_workcentre_scan() -> Msg:
    pdf = fake_pdf(103, 120_000, "Xerox WorkCentre 7845")
    boundary = "Xerox'(WorkCentre)_=+7845?/Scan"
    text = (
        "Please open the attached document. It was scanned and sent to you using a Xerox "
        "multifunction device.\n\nNumber of Images: 2\nAttachment File Type: PDF\n\n"
        "Device Name: XRX9C934E5A1B2C\nDevice Location: 3rd floor copy room\n"
    )
    raw = entity(
        head(
            "From: Xerox WorkCentre 7845 <scanner@contoso.com>",
            "To: alice@contoso.com",
            "Cc: bob@contoso.com",
            "Subject: Scan from a Xerox WorkCentre",
            "Date: Fri, 15 Mar 2024 10:15:23 +0100",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        'Content-Type: text/plain; charset="US-ASCII"',
                        "Content-Transfer-Encoding: 7bit",
                    ),
                    crlf(text, "ascii"),
                ),
                entity(
                    head(
                        'Content-Type: application/pdf; name="Scan_0001.pdf"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="Scan_0001.pdf"',
                    ),
                    b64(pdf),
                ),
            ],
            preamble=b"This is a multi-part message in MIME format.\r\n",
        ),
    )
    return Msg(
        "xerox-workcentre-scan",
        "Xerox scan: no Message-ID; boundary with ' ( ) = + ? / characters; preamble text; "
        "Cc recipient in the envelope",
        "scanner@contoso.com",
        ["alice@contoso.com", "bob@contoso.com"],
        "Scan from a Xerox WorkCentre",
        "text",
        ["scanned and sent to you using a Xerox", "Device Location: 3rd floor copy room"],
        raw,
        [Att("application/pdf", pdf, name="Scan_0001.pdf")],
    )


def ricoh_scan_bare_lf_tiff() -> Msg:
    tiff = fake_tiff(104, 150_000)
    boundary = "RICOH_IM_C3000_0a1b2c3d4e5f"
    text = "Scan data from RICOH IM C3000\n\nFile name: 20240315101523.tif\nResolution: 200 x 200 dpi\n"
    raw = entity(
        head(
            "From: RICOH IM C3000 <scanner@contoso.com>",
            "To: Alice.Smith@CONTOSO.COM",
            "Subject: Scan Data from RICOH IM C3000",
            "Message-ID: <20240315101523.0001.IMC3000@contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
            "X-Mailer: RICOH IM C3000",
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=us-ascii",
                        "Content-Transfer-Encoding: 7bit",
                    ),
                    crlf(text, "ascii"),
                ),
                entity(
                    head(
                        'Content-Type: image/tiff; name="20240315101523.tif"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="20240315101523.tif"',
                    ),
                    b64(tiff, width=72),
                ),
            ],
        ),
    ).replace(CRLF, b"\n")
    return Msg(
        "ricoh-scan-bare-lf-tiff",
        "Ricoh scan: the whole message uses bare LF line endings; no Date; 150 KB TIFF in "
        "72-column base64; header To in another letter case than the envelope",
        "scanner@contoso.com",
        ["Alice.Smith@contoso.com"],
        "Scan Data from RICOH IM C3000",
        "text",
        ["Scan data from RICOH IM C3000", "Resolution: 200 x 200 dpi"],
        raw,
        [Att("image/tiff", tiff, name="20240315101523.tif")],
    )


def canon_imagerunner_scan_rfc2231() -> Msg:
    pdf = fake_pdf(105, 60_000, "Canon iR-ADV C5535")
    filename = "Rechnung März.pdf"
    boundary = "_CANON_MULTIPART_BOUNDARY_0001_"
    raw = entity(
        head(
            "From: =?ISO-8859-1?Q?Canon_iR-ADV_C5535_B=FCro?=",
            " =?ISO-8859-1?Q?_M=FCnchen?= <scanner@contoso.com>",
            "To: buchhaltung@contoso.com",
            "Subject: Attached Image",
            "Date: Fri, 15 Mar 2024 09:41:07 +0100",
            "Message-ID: <0001CANON.iRADVC5535.20240315094107@contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=US-ASCII",
                        "Content-Transfer-Encoding: 7bit",
                    ),
                    b"Attached Image\r\n",
                ),
                entity(
                    head(
                        "Content-Type: application/pdf;",
                        f" name*=UTF-8''{pct(filename)}",
                        "Content-Transfer-Encoding: base64",
                        "Content-Disposition: attachment;",
                        f" filename*=UTF-8''{pct(filename)}",
                    ),
                    b64(pdf),
                ),
            ],
        ),
    )
    return Msg(
        "canon-imagerunner-scan-rfc2231",
        "Canon scan: From display name in ISO-8859-1 encoded words folded over two lines; "
        "RFC 2231 filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf; envelope-only (Bcc) recipient",
        "scanner@contoso.com",
        ["buchhaltung@contoso.com", "archiv@contoso.com"],
        "Attached Image",
        "text",
        ["Attached Image"],
        raw,
        [Att("application/pdf", pdf, name=filename)],
    )


def konica_minolta_scan_continuation() -> Msg:
    pdf = fake_pdf(106, 90_000, "KONICA MINOLTA bizhub C300i")
    first, second = "Geschäftsbericht 2024 ", "Übersicht.pdf"
    boundary = "--_=_NextPart_KMBT_C300i_5f3c"
    raw = entity(
        head(
            "From: bizhub C300i <scanner@contoso.com>",
            "To: vertrieb@contoso.com",
            "Subject: Message from KM_C300i",
            "Date: Fri, 15 Mar 2024 11:02:45 +0100",
            "Message-ID: <KMBT_C300i.20240315110245.5f3c@contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        'Content-Type: text/plain; charset="UTF-8"',
                        "Content-Transfer-Encoding: 7bit",
                    ),
                    b"Sent from bizhub C300i\r\nDocument: 12 pages\r\n",
                ),
                entity(
                    head(
                        "Content-Type: application/pdf;",
                        f" name*0*=UTF-8''{pct(first)};",
                        f" name*1*={pct(second)}",
                        "Content-Transfer-Encoding: base64",
                        "Content-Disposition: attachment;",
                        f" filename*0*=UTF-8''{pct(first)};",
                        f" filename*1*={pct(second)}",
                    ),
                    b64(pdf),
                ),
            ],
        ),
    )
    return Msg(
        "konica-minolta-scan-continuation",
        "Konica Minolta scan: boundary parameter itself starts with '--' (delimiter lines "
        "begin with four dashes); RFC 2231 continuation filename*0*= / filename*1*=",
        "scanner@contoso.com",
        ["vertrieb@contoso.com"],
        "Message from KM_C300i",
        "text",
        ["Sent from bizhub C300i", "Document: 12 pages"],
        raw,
        [Att("application/pdf", pdf, name=first + second)],
    )


def brother_scan_8bit_utf8() -> Msg:
    jpeg = fake_jpeg(107, 70_000)
    filename = "Scan 2024-03-15 10.15.jpg"
    boundary = "BROTHER_MFC_L8900CDW_BOUNDARY"
    text = (
        "Gescannt am 15.03.2024 um 10:15 – Größe: A4, Auflösung: 300 dpi\n"
        "Gerät: MFC-L8900CDW (Büro 3. OG)\n"
    )
    raw = entity(
        head(
            'From: "scanner@floor3" <scanner@contoso.com>',
            "To: alice@contoso.com",
            "Subject: Brother MFC-L8900CDW Scan",
            "Date: Fri, 15 Mar 2024 10:15:02 +0100",
            "Message-ID: <MFCL8900CDW.1710494102@contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(head("Content-Type: text/plain; charset=utf-8"), crlf(text, "utf-8")),
                entity(
                    head(
                        f'Content-Type: image/jpeg; name="{filename}"',
                        "Content-Transfer-Encoding: base64",
                        f'Content-Disposition: attachment; filename="{filename}"',
                    ),
                    b64(jpeg),
                ),
            ],
        ),
    )
    return Msg(
        "brother-scan-8bit-utf8",
        "Brother scan: display name with '@' inside quotes (\"scanner@floor3\"); UTF-8 8-bit "
        "text body with no Content-Transfer-Encoding header; JPEG with spaces in its name",
        "scanner@contoso.com",
        ["alice@contoso.com"],
        "Brother MFC-L8900CDW Scan",
        "text",
        ["Größe: A4, Auflösung: 300 dpi", "Gerät: MFC-L8900CDW (Büro 3. OG)"],
        raw,
        [Att("image/jpeg", jpeg, name=filename)],
    )


def toshiba_estudio_same_names() -> Msg:
    first = fake_pdf(108, 40_000, "TOSHIBA e-STUDIO2515AC")
    second = fake_pdf(109, 38_000, "TOSHIBA e-STUDIO2515AC")
    boundary = "=_TOSHIBA_eSTUDIO_=_0001"

    def pdf_part(data: bytes) -> bytes:
        return entity(
            head(
                'Content-Type: application/pdf; name="DOC150324.pdf"',
                "Content-Transfer-Encoding: base64",
                'Content-Disposition: attachment; filename="DOC150324.pdf"',
            ),
            b64(data),
        )

    raw = entity(
        head(
            "From: TOSHIBA e-STUDIO2515AC <scanner@contoso.com>",
            "To: bob@contoso.com",
            "Subject: Scanned from TOSHIBA e-STUDIO2515AC",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head("Content-Type: text/plain; charset=us-ascii"),
                    b"Scanned from TOSHIBA e-STUDIO2515AC\r\n[Scan to Email] 2 file(s) attached.\r\n",
                ),
                pdf_part(first),
                pdf_part(second),
            ],
        ),
    )
    return Msg(
        "toshiba-estudio-same-names",
        "Toshiba scan: neither Date nor Message-ID; two different PDFs with the same filename; "
        "boundary starting with '='",
        "scanner@contoso.com",
        ["bob@contoso.com"],
        "Scanned from TOSHIBA e-STUDIO2515AC",
        "text",
        ["[Scan to Email] 2 file(s) attached."],
        raw,
        [
            Att("application/pdf", first, name="DOC150324.pdf"),
            Att("application/pdf", second, name="DOC150324.pdf"),
        ],
    )


def kyocera_taskalfa_cp1252() -> Msg:
    pdf = fake_pdf(110, 30_000, "KYOCERA TASKalfa 3253ci")
    filename = "Überweisungsbeleg März.pdf"
    boundary = "KYOCERA_TASKalfa_3253ci_BOUNDARY_1710495321"
    text = (
        "Gescanntes Dokument: Überweisungsbeleg März\n"
        "Größe: 2 Seiten – Kosten: 0,12 €\n„Empfang“ Erdgeschoss\n"
    )
    subject = "Scan von Gerät „Empfang“"
    raw = entity(
        head(
            'From: "Kyocera TASKalfa 3253ci" <scanner@contoso.com>',
            "To: finanzen@contoso.com",
            f"Subject: {q_word(subject, 'windows-1252')}",
            "Date: Fri, 15 Mar 2024 10:35:21 +0100",
            "Message-ID: <TASKalfa3253ci.1710495321@contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/mixed; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head("Content-Type: text/plain; charset=windows-1252"),
                    crlf(text, "windows-1252"),
                ),
                entity(
                    head(
                        f'Content-Type: application/pdf; name="{b_word(filename, "UTF-8")}"',
                        "Content-Transfer-Encoding: base64",
                        f'Content-Disposition: attachment; filename="{b_word(filename, "UTF-8")}"',
                    ),
                    b64(pdf),
                ),
            ],
        ),
    )
    return Msg(
        "kyocera-taskalfa-cp1252",
        "Kyocera scan: windows-1252 8-bit body with no Content-Transfer-Encoding (€ and „“ "
        "are C1 bytes 0x80-0x9f); RFC 2047 encoded filename in quotes; windows-1252 Q subject",
        "scanner@contoso.com",
        ["finanzen@contoso.com"],
        subject,
        "text",
        ["Größe: 2 Seiten – Kosten: 0,12 €", "„Empfang“ Erdgeschoss"],
        raw,
        [Att("application/pdf", pdf, name=filename)],
    )


# -- application mail -------------------------------------------------------------------------


def app_utf8_cjk_emoji_alternative() -> Msg:
    chunks = ["月次レポート 📊 ", "2024年3月 — ", "売上・数据汇总 ✅"]
    text = "売上は前月比 12% 増加しました。\n数据汇总已完成。\n🚀 Launch ready\n"
    html = (
        '<div dir="ltr"><p>売上は前月比 <b>12%</b> 増加しました。</p>'
        "<p>数据汇总已完成。</p><p>🚀 Launch ready</p></div>\n"
    )
    boundary = "000000000000a1b2c3d4e5f60718"
    raw = entity(
        head(
            'From: "Reporting Service" <reports@contoso.com>',
            "To: Alice <alice@contoso.com>",
            "Cc: bob@fabrikam.com",
            f"Subject: {words(chunks, 'UTF-8')}",
            "Date: Mon, 1 Apr 2024 06:00:00 +0000",
            "Message-ID: <monthly-report-2024-03@reports.contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        'Content-Type: text/plain; charset="UTF-8"',
                        "Content-Transfer-Encoding: base64",
                    ),
                    b64(crlf(text, "utf-8")),
                ),
                entity(
                    head(
                        'Content-Type: text/html; charset="UTF-8"',
                        "Content-Transfer-Encoding: base64",
                    ),
                    b64(crlf(html, "utf-8")),
                ),
            ],
        ),
    )
    return Msg(
        "app-utf8-cjk-emoji-alternative",
        "report mailer: multipart/alternative text+html, both UTF-8 base64 with CJK and emoji; "
        "subject in three UTF-8 B encoded words on three lines; external Cc in the envelope",
        "reports@contoso.com",
        ["alice@contoso.com", "bob@fabrikam.com"],
        "".join(chunks),
        "html",
        ["増加しました", "数据汇总已完成", "🚀 Launch ready"],
        raw,
    )


def app_utf8_arabic_qp() -> Msg:
    chunks = ["تقرير ", "المبيعات", " الشهري", " – مارس"]
    html = (
        '<html dir="rtl" lang="ar"><body>\n<h1>تقرير المبيعات</h1>\n'
        "<p>إجمالي المبيعات: ١٢٬٥٠٠ دينار</p>\n<p>شكراً لكم</p>\n</body></html>\n"
    )
    raw = entity(
        head(
            "From: Sales Dashboard <dashboard@contoso.com>",
            "To: sales-mena@contoso.com",
            f"Subject: {words(chunks, 'UTF-8', 'Q')}",
            "Date: Mon, 1 Apr 2024 07:30:00 +0300",
            "Message-ID: <sales-2024-03.mena@dashboard.contoso.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/html; charset=UTF-8",
            "Content-Transfer-Encoding: quoted-printable",
        ),
        qp(html, "utf-8"),
    )
    return Msg(
        "app-utf8-arabic-qp",
        "dashboard: single-part Arabic HTML (RTL), UTF-8 quoted-printable; subject in four UTF-8 "
        "Q encoded words; envelope-only (Bcc) recipient",
        "dashboard@contoso.com",
        ["sales-mena@contoso.com", "manager@contoso.com"],
        "".join(chunks),
        "html",
        ["تقرير المبيعات", "إجمالي المبيعات: ١٢٬٥٠٠ دينار"],
        raw,
    )


def app_iso_8859_1_qp() -> Msg:
    subject = "Bestätigung Ihrer Bestellung Nr. 4711"
    text = (
        "Sehr geehrte Damen und Herren,\n\n"
        "wir bestätigen Ihre Bestellung Nr. 4711 über 12 Stück Büroklammern à 1,99 EUR. "
        "Die Lieferung erfolgt an die Hauptstraße 5, 80331 München.\n\n"
        "Mit freundlichen Grüßen\nIhr Einkauf\n"
    )
    raw = entity(
        head(
            "From: ERP System <erp@contoso.com>",
            'To: einkauf@contoso.com, "Lieferant GmbH" <lieferant@fabrikam.com>',
            f"Subject: {q_word(subject, 'ISO-8859-1')}",
            "Date: Fri, 15 Mar 2024 14:02:11 +0100",
            "Message-ID: <order-4711@erp.contoso.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=ISO-8859-1",
            "Content-Transfer-Encoding: quoted-printable",
        ),
        qp(text, "iso-8859-1"),
    )
    return Msg(
        "app-iso-8859-1-qp",
        "ERP: ISO-8859-1 quoted-printable body with soft line breaks; ISO-8859-1 Q subject; "
        "header To names lieferant@fabrikam.com, who is NOT in the envelope and must not get it",
        "erp@contoso.com",
        ["einkauf@contoso.com"],
        subject,
        "text",
        [
            "wir bestätigen Ihre Bestellung Nr. 4711",
            "Hauptstraße 5, 80331 München",
            "Mit freundlichen Grüßen",
        ],
        raw,
    )


def app_iso_8859_2_base64() -> Msg:
    chunks = ["Faktura VAT nr 2024/03/117: ", "Zażółć gęślą jaźń"]
    subject = "".join(chunks)
    text = (
        "Dzień dobry,\n\nw załączeniu przesyłamy fakturę. Zażółć gęślą jaźń.\n"
        "Příliš žluťoučký kůň úpěl ďábelské ódy.\n"
    )
    raw = entity(
        head(
            "From: Faktury <faktury@contoso.com>",
            "To: ksiegowosc@contoso.com",
            f"Subject: {words(chunks, 'ISO-8859-2')}",
            "Date: Fri, 15 Mar 2024 08:00:00 +0100",
            "Message-ID: <fv-2024-03-117@faktury.contoso.com>",
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="iso-8859-2"',
            "Content-Transfer-Encoding: base64",
        ),
        b64(crlf(text, "iso-8859-2")) + CRLF,
    )
    return Msg(
        "app-iso-8859-2-base64",
        "invoicing: Polish and Czech in ISO-8859-2, base64 body; subject in two ISO-8859-2 B "
        "encoded words",
        "faktury@contoso.com",
        ["ksiegowosc@contoso.com"],
        subject,
        "text",
        ["Zażółć gęślą jaźń", "Příliš žluťoučký kůň úpěl ďábelské ódy"],
        raw,
    )


def app_windows_1251_8bit() -> Msg:
    subject = "Счёт на оплату № 318 от 15.03.2024"
    text = "Добрый день!\n\nНаправляем счёт на оплату № 318.\nСумма: 12 500,00 руб.\n"
    raw = entity(
        head(
            f"From: {b_word('1С Бухгалтерия', 'windows-1251')} <buh@contoso.com>",
            "To: director@contoso.com",
            f"Subject: {b_word(subject, 'windows-1251')}",
            "Date: Fri, 15 Mar 2024 12:00:00 +0300",
            "Message-ID: <schet-318@buh.contoso.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=windows-1251",
            "Content-Transfer-Encoding: 8bit",
        ),
        crlf(text, "windows-1251"),
    )
    return Msg(
        "app-windows-1251-8bit",
        "accounting: Cyrillic windows-1251 body sent 8bit; windows-1251 B subject and From name",
        "buh@contoso.com",
        ["director@contoso.com"],
        subject,
        "text",
        ["Направляем счёт на оплату № 318", "Сумма: 12 500,00 руб."],
        raw,
    )


def app_koi8_r_base64() -> Msg:
    chunks = ["Отчёт о резервном ", "копировании: успешно"]
    text = "Резервное копирование завершено успешно.\nОбъём: 42 ГБ\n"
    raw = entity(
        head(
            "From: Backup <backup@contoso.com>",
            "To: it@contoso.com",
            f"Subject: {words(chunks, 'KOI8-R', 'Q')}",
            "Date: Sat, 16 Mar 2024 03:15:00 +0300",
            "Message-ID: <backup-20240316@backup.contoso.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=KOI8-R",
            "Content-Transfer-Encoding: base64",
        ),
        b64(crlf(text, "koi8-r")) + CRLF,
    )
    return Msg(
        "app-koi8-r-base64",
        "backup tool: KOI8-R base64 body; subject split into two KOI8-R Q encoded words",
        "backup@contoso.com",
        ["it@contoso.com"],
        "".join(chunks),
        "text",
        ["Резервное копирование завершено успешно", "Объём: 42 ГБ"],
        raw,
    )


def app_iso_2022_jp_shift_jis() -> Msg:
    chunks = ["【重要】第２四半期", "　全社会議の", "お知らせ（４月１０日）"]
    text = "各位\n\n第２四半期の全社会議を４月１０日に開催します。\n場所：本社３階　大会議室\n"
    html = (
        "<html><body><p>各位</p><p>第２四半期の全社会議を４月１０日に開催します。</p>"
        "<p>場所：本社３階　大会議室</p></body></html>\n"
    )
    boundary = "----=_NextPart_ISO2022JP_SJIS_0001"
    raw = entity(
        head(
            f"From: {b_word('総務部', 'ISO-2022-JP')} <soumu@contoso.com>",
            "To: all-staff@contoso.com",
            f"Subject: {words(chunks, 'ISO-2022-JP')}",
            "Date: Mon, 25 Mar 2024 09:00:00 +0900",
            "Message-ID: <zensha-kaigi-2024q2@soumu.contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        'Content-Type: text/plain; charset="ISO-2022-JP"',
                        "Content-Transfer-Encoding: 7bit",
                    ),
                    crlf(text, "iso-2022-jp"),
                ),
                entity(
                    head(
                        "Content-Type: text/html; charset=Shift_JIS",
                        "Content-Transfer-Encoding: base64",
                    ),
                    b64(crlf(html, "shift_jis")),
                ),
            ],
        ),
    )
    return Msg(
        "app-iso-2022-jp-shift-jis",
        "Japanese mailer: text/plain ISO-2022-JP 7bit + text/html Shift_JIS base64; subject "
        "in three ISO-2022-JP B words; header To is a list address that is NOT in the "
        "envelope (the app expanded it itself) and must not get the message",
        "soumu@contoso.com",
        ["tanaka@contoso.com", "suzuki@contoso.com"],
        "".join(chunks),
        "html",
        ["全社会議を４月１０日に開催します", "本社３階　大会議室"],
        raw,
    )


def app_gbk_base64() -> Msg:
    subject = "关于2024年第一季度数据报告的通知"
    text = "各位同事：\n第一季度数据报告已发布，请查阅。\n繁體字測試：資料庫\n"
    raw = entity(
        head(
            f"From: {b_word('办公系统', 'GB2312')} <oa@contoso.com>",
            "To: zhang.wei@contoso.com",
            f"Subject: {b_word(subject, 'GB2312')}",
            "Date: Mon, 1 Apr 2024 09:30:00 +0800",
            "Message-ID: <oa-notice-2024q1@oa.contoso.com>",
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="GBK"',
            "Content-Transfer-Encoding: base64",
        ),
        b64(crlf(text, "gbk")) + CRLF,
    )
    return Msg(
        "app-gbk-base64",
        "OA system: GB2312 B subject and From name; GBK base64 body including traditional "
        "characters that exist in GBK but not in GB2312",
        "oa@contoso.com",
        ["zhang.wei@contoso.com"],
        subject,
        "text",
        ["第一季度数据报告已发布", "繁體字測試：資料庫"],
        raw,
    )


def app_big5_qp() -> Msg:
    subject = "會議記錄：許功蓋專案進度"
    html = (
        "<html><body><p>會議記錄</p><p>許功蓋專案進度：已完成百分之八十。</p>"
        '<p style="color:#336699">下次會議：四月十日</p></body></html>\n'
    )
    raw = entity(
        head(
            f"From: {b_word('人事部', 'Big5')} <hr-tw@contoso.com>",
            "To: staff-tw@contoso.com",
            f"Subject: {b_word(subject, 'Big5')}",
            "Date: Wed, 20 Mar 2024 17:45:00 +0800",
            "Message-ID: <minutes-20240320@hr-tw.contoso.com>",
            "MIME-Version: 1.0",
            "Content-Type: text/html; charset=Big5",
            "Content-Transfer-Encoding: quoted-printable",
        ),
        qp(html, "big5"),
    )
    return Msg(
        "app-big5-qp",
        "Taiwan HR mailer: Big5 HTML quoted-printable; 許/功/蓋 have 0x5C ('\\') as their "
        "second byte; Big5 B subject",
        "hr-tw@contoso.com",
        ["staff-tw@contoso.com"],
        subject,
        "html",
        ["許功蓋專案進度：已完成百分之八十", "下次會議：四月十日"],
        raw,
    )


def app_euc_kr_related_cid() -> Msg:
    logo = png(111, 48, 48)
    chart = fake_jpeg(112, 6_000, 640, 360)
    subject = "주간 업무 보고서 (3월 셋째 주)"
    html = (
        '<html><body><img src="cid:logo-0001@groupware.contoso.com" alt="logo">'
        "<h2>주간 업무 보고서</h2><p>이번 주 진행률: 85%</p>"
        '<img src="cid:chart-0002@groupware.contoso.com"></body></html>\n'
    )
    boundary = "----=_Part_EUCKR_related_7f"
    raw = entity(
        head(
            f"From: {b_word('그룹웨어', 'EUC-KR')} <groupware@contoso.com>",
            "To: kim@contoso.com",
            f"Subject: {b_word(subject, 'EUC-KR')}",
            "Date: Fri, 22 Mar 2024 18:00:00 +0900",
            "Message-ID: <weekly-2024-12@groupware.contoso.com>",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/related; type="text/html"; boundary="{boundary}"',
        ),
        multipart(
            boundary,
            [
                entity(
                    head(
                        "Content-Type: text/html; charset=euc-kr",
                        "Content-Transfer-Encoding: base64",
                    ),
                    b64(crlf(html, "euc-kr")),
                ),
                entity(
                    head(
                        'Content-Type: image/png; name="logo.png"',
                        "Content-Transfer-Encoding: base64",
                        "Content-ID: <logo-0001@groupware.contoso.com>",
                        'Content-Disposition: inline; filename="logo.png"',
                    ),
                    b64(logo),
                ),
                entity(
                    head(
                        "Content-Type: image/jpeg",
                        "Content-Transfer-Encoding: base64",
                        "Content-ID: <chart-0002@groupware.contoso.com>",
                    ),
                    b64(chart),
                ),
            ],
        ),
    )
    return Msg(
        "app-euc-kr-related-cid",
        "groupware: multipart/related EUC-KR HTML with two cid: images — a PNG with filename "
        "and Content-Disposition: inline, and a JPEG with only a Content-ID (no name, no "
        "disposition); EUC-KR B subject",
        "groupware@contoso.com",
        ["kim@contoso.com"],
        subject,
        "html",
        ["주간 업무 보고서", "이번 주 진행률: 85%", "cid:logo-0001@groupware.contoso.com"],
        raw,
        [
            Att(
                "image/png",
                logo,
                name="logo.png",
                inline=True,
                content_id="logo-0001@groupware.contoso.com",
            ),
            Att("image/jpeg", chart, inline=True, content_id="chart-0002@groupware.contoso.com"),
        ],
    )


def app_invoice_mixed_related_alternative() -> Msg:
    logo = png(113, 120, 40)
    pdf = fake_pdf(114, 25_000, "Contoso Billing")
    xlsx = zip_file(
        {
            "[Content_Types].xml": b'<?xml version="1.0" encoding="UTF-8"?><Types/>',
            "xl/workbook.xml": b'<?xml version="1.0" encoding="UTF-8"?><workbook/>',
            "xl/worksheets/sheet1.xml": noise(115, 4_000).hex().encode("ascii"),
        }
    )
    xlsx_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    text = (
        "Dear customer,\n\nplease find attached invoice INV-2024-0315 for 1.234,56 € "
        "(due 14 April 2024).\n\nKind regards\nContoso Billing\n"
    )
    html = (
        '<html><body><img src="cid:contoso-logo@billing.contoso.com" alt="Contoso">\n'
        "<p>Dear customer,</p>\n<p>please find attached invoice <b>INV-2024-0315</b> for "
        "1.234,56 € (due 14 April 2024).</p>\n<p>Kind regards<br>Contoso Billing</p>\n"
        "</body></html>\n"
    )
    alternative = entity(
        head('Content-Type: multipart/alternative; boundary="alt_b7e1"'),
        multipart(
            "alt_b7e1",
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=utf-8",
                        "Content-Transfer-Encoding: quoted-printable",
                    ),
                    qp(text, "utf-8"),
                ),
                entity(
                    head(
                        "Content-Type: text/html; charset=utf-8",
                        "Content-Transfer-Encoding: quoted-printable",
                    ),
                    qp(html, "utf-8"),
                ),
            ],
        ),
    )
    related = entity(
        head(
            'Content-Type: multipart/related; boundary="related_b7e1"; type="multipart/alternative"'
        ),
        multipart(
            "related_b7e1",
            [
                alternative,
                entity(
                    head(
                        'Content-Type: image/png; name="contoso-logo.png"',
                        "Content-Transfer-Encoding: base64",
                        "Content-ID: <contoso-logo@billing.contoso.com>",
                        'Content-Disposition: inline; filename="contoso-logo.png"',
                    ),
                    b64(logo),
                ),
            ],
        ),
    )
    raw = entity(
        head(
            'From: "Contoso Billing" <billing@contoso.com>',
            'To: "Fabrikam Accounts" <accounts@fabrikam.com>',
            "Subject: Invoice INV-2024-0315 from Contoso",
            "Date: Fri, 15 Mar 2024 16:00:00 +0100",
            "Message-ID: <INV-2024-0315@billing.contoso.com>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="mixed_b7e1"',
        ),
        multipart(
            "mixed_b7e1",
            [
                related,
                entity(
                    head(
                        'Content-Type: application/pdf; name="INV-2024-0315.pdf"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="INV-2024-0315.pdf"',
                    ),
                    b64(pdf),
                ),
                entity(
                    head(
                        f'Content-Type: {xlsx_type}; name="INV-2024-0315-details.xlsx"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="INV-2024-0315-details.xlsx"',
                    ),
                    b64(xlsx),
                ),
            ],
        ),
    )
    return Msg(
        "app-invoice-mixed-related-alternative",
        "billing: multipart/mixed > related > alternative (text+html, UTF-8 QP) with a cid: "
        "logo, plus PDF and XLSX attachments; external To; envelope-only (Bcc) archive copy",
        "billing@contoso.com",
        ["accounts@fabrikam.com", "archive@contoso.com"],
        "Invoice INV-2024-0315 from Contoso",
        "html",
        [
            "<b>INV-2024-0315</b>",
            "1.234,56 € (due 14 April 2024)",
            "cid:contoso-logo@billing.contoso.com",
        ],
        raw,
        [
            Att(
                "image/png",
                logo,
                name="contoso-logo.png",
                inline=True,
                content_id="contoso-logo@billing.contoso.com",
            ),
            Att("application/pdf", pdf, name="INV-2024-0315.pdf"),
            Att(xlsx_type, xlsx, name="INV-2024-0315-details.xlsx"),
        ],
    )


def app_forwarded_rfc822() -> Msg:
    archive = zip_file({"invoice.pdf.exe": noise(116, 3_000)})
    inner = entity(
        head(
            'From: "Supplier Billing" <billing@fabrikam-invoices.example>',
            "To: helpdesk@contoso.com",
            "Subject: Invoice overdue",
            "Date: Thu, 14 Mar 2024 23:12:09 +0000",
            "Message-ID: <8f2c1a@fabrikam-invoices.example>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="inner-0002"',
        ),
        multipart(
            "inner-0002",
            [
                entity(
                    head("Content-Type: text/plain; charset=us-ascii"),
                    b"Please pay the attached invoice today.\r\n",
                ),
                entity(
                    head(
                        'Content-Type: application/zip; name="invoice.zip"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="invoice.zip"',
                    ),
                    b64(archive),
                ),
            ],
        ),
    )
    raw = entity(
        head(
            "From: Helpdesk <helpdesk@contoso.com>",
            "To: it-security@contoso.com",
            "Cc: legal@contoso.com",
            "Subject: Fwd: Suspicious invoice from supplier",
            "Date: Fri, 15 Mar 2024 08:30:00 +0100",
            "Message-ID: <fwd-8f2c1a@helpdesk.contoso.com>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="fwd-outer-0001"',
        ),
        multipart(
            "fwd-outer-0001",
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"
                    ),
                    b"Forwarding the suspicious message below as an attachment.\r\n-- Helpdesk\r\n",
                ),
                entity(
                    head("Content-Type: message/rfc822", "Content-Disposition: attachment"), inner
                ),
            ],
        ),
    )
    return Msg(
        "app-forwarded-rfc822",
        "helpdesk: a message forwarded as a message/rfc822 part (no filename; it has its own "
        "attachment inside); header Cc legal@contoso.com is NOT in the envelope and must not "
        "get it; envelope-only (Bcc) audit copy",
        "helpdesk@contoso.com",
        ["it-security@contoso.com", "audit@contoso.com"],
        "Fwd: Suspicious invoice from supplier",
        "text",
        ["Forwarding the suspicious message below as an attachment."],
        raw,
        [Att("message/rfc822", inner, name_suffix=".eml")],
    )


def app_calendar_invite() -> Msg:
    ics = crlf(
        "BEGIN:VCALENDAR\nPRODID:-//Contoso//Room Booking 2.1//EN\nVERSION:2.0\nMETHOD:REQUEST\n"
        "BEGIN:VEVENT\nUID:qr-2024-04-02@booking.contoso.com\nDTSTAMP:20240315T090000Z\n"
        "DTSTART:20240402T120000Z\nDTEND:20240402T130000Z\nSUMMARY:Quarterly review\n"
        "LOCATION:Room 3F Aurora\nORGANIZER;CN=Room Booking:mailto:booking@contoso.com\n"
        "ATTENDEE;CN=Alice;ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:alice@contoso.com\n"
        "ATTENDEE;CN=Guest;ROLE=OPT-PARTICIPANT;RSVP=TRUE:mailto:guest@fabrikam.com\n"
        "END:VEVENT\nEND:VCALENDAR\n",
        "utf-8",
    )
    text = (
        "You have been invited to: Quarterly review\nWhen: Tue 2 Apr 2024 14:00 - 15:00 (CET)\n"
        "Where: Room 3F Aurora\n"
    )
    html = (
        "<html><body><p>You have been invited to: <b>Quarterly review</b></p>"
        "<p>When: Tue 2 Apr 2024 14:00 - 15:00 (CET)<br>Where: Room 3F Aurora</p></body></html>\n"
    )
    alternative = entity(
        head('Content-Type: multipart/alternative; boundary="cal-alt-0001"'),
        multipart(
            "cal-alt-0001",
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=UTF-8", "Content-Transfer-Encoding: 7bit"
                    ),
                    crlf(text, "utf-8"),
                ),
                entity(
                    head(
                        "Content-Type: text/html; charset=UTF-8", "Content-Transfer-Encoding: 7bit"
                    ),
                    crlf(html, "utf-8"),
                ),
                entity(
                    head(
                        "Content-Type: text/calendar; charset=UTF-8; method=REQUEST",
                        "Content-Transfer-Encoding: base64",
                    ),
                    b64(ics),
                ),
            ],
        ),
    )
    raw = entity(
        head(
            'From: "Room Booking" <booking@contoso.com>',
            'To: Alice <alice@contoso.com>, "Guest" <guest@fabrikam.com>',
            "Subject: Invitation: Quarterly review @ Tue 2 Apr 2024 14:00 - 15:00 (CET)",
            "Date: Fri, 15 Mar 2024 10:00:00 +0100",
            "Message-ID: <qr-2024-04-02.invite@booking.contoso.com>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="cal-mixed-0001"',
        ),
        multipart(
            "cal-mixed-0001",
            [
                alternative,
                entity(
                    head(
                        'Content-Type: application/ics; name="invite.ics"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="invite.ics"',
                    ),
                    b64(ics),
                ),
            ],
        ),
    )
    return Msg(
        "app-calendar-invite",
        "room booking: text/calendar; method=REQUEST as the third alternative (no filename) and "
        "the same event attached as invite.ics (application/ics); header To guest@fabrikam.com "
        "is NOT in the envelope and must not get it; envelope-only room mailbox",
        "booking@contoso.com",
        ["alice@contoso.com", "room-3f-aurora@contoso.com"],
        "Invitation: Quarterly review @ Tue 2 Apr 2024 14:00 - 15:00 (CET)",
        "html",
        ["You have been invited to: <b>Quarterly review</b>", "Where: Room 3F Aurora"],
        raw,
        [
            Att("text/calendar", ics, name_suffix=".ics"),
            Att("application/ics", ics, name="invite.ics"),
        ],
    )


def app_backup_report_undisclosed() -> Msg:
    log = crlf(
        "2024-03-15 00:00:01 INFO  Job 'Nightly' started\n"
        "2024-03-15 00:41:17 INFO  VM sql01: 312.4 GB processed, 12.1 GB transferred\n"
        "2024-03-15 02:14:08 INFO  Job 'Nightly' finished: Success (12 of 12 VMs)\n",
        "ascii",
    )
    raw = entity(
        head(
            "From: Veeam Backup <backup-reports@contoso.com>",
            "To: undisclosed-recipients:;",
            "Subject: [Success] Nightly backup job (12 VMs) completed",
            "Date: Fri, 15 Mar 2024 02:14:09 +0100",
            "Message-ID: <nightly-20240315@backup-reports.contoso.com>",
            "MIME-Version: 1.0",
            'Content-Type: multipart/mixed; boundary="backup-report-0001"',
        ),
        multipart(
            "backup-report-0001",
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=us-ascii",
                        "Content-Transfer-Encoding: 7bit",
                    ),
                    b"Nightly backup job completed successfully.\r\n"
                    b"Processed: 12 VMs, 1.2 TB\r\nDuration: 02:14:07\r\n",
                ),
                entity(
                    head(
                        'Content-Type: text/plain; charset=us-ascii; name="backup-2024-03-15.log"',
                        "Content-Transfer-Encoding: 7bit",
                        'Content-Disposition: attachment; filename="backup-2024-03-15.log"',
                    ),
                    log,
                ),
                entity(
                    head(
                        'Content-Type: text/plain; name="errors.txt"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="errors.txt"',
                    ),
                    b"",
                ),
            ],
        ),
    )
    return Msg(
        "app-backup-report-undisclosed",
        "backup tool: To is the empty group 'undisclosed-recipients:;' so every recipient is "
        "envelope-only (one external); a 7bit text/plain attachment next to the text body; a "
        "zero-byte attachment",
        "backup-reports@contoso.com",
        ["ops@contoso.com", "oncall@fabrikam.com"],
        "[Success] Nightly backup job (12 VMs) completed",
        "text",
        ["Nightly backup job completed successfully.", "Duration: 02:14:07"],
        raw,
        [
            Att("text/plain", log, name="backup-2024-03-15.log"),
            Att("text/plain", b"", name="errors.txt"),
        ],
    )


def app_cron_no_mime_headers() -> Msg:
    text = (
        "rotate-logs: compressed 14 files\n"
        "rotate-logs: Größe vorher 3,2 GB – nachher 410 MB\n"
        "rotate-logs: done\n"
    )
    raw = entity(
        head(
            "From: cron@contoso.com (Cron Daemon)",
            "To: sysadmin@contoso.com",
            "Subject: Cron <root@backup01> /usr/local/bin/rotate-logs.sh",
            "Date: Fri, 15 Mar 2024 04:00:02 +0100",
            "Message-ID: <20240315030002.4711@backup01.contoso.com>",
            "X-Cron-Env: <SHELL=/bin/sh>",
            "X-Cron-Env: <HOME=/root>",
        ),
        crlf(text, "utf-8"),
    )
    return Msg(
        "app-cron-no-mime-headers",
        "cron: no MIME-Version and no Content-Type at all, yet UTF-8 8-bit bytes in the body "
        "(charset undeclared, so only ASCII snippets are expected); From with a (comment)",
        "cron@contoso.com",
        ["sysadmin@contoso.com"],
        "Cron <root@backup01> /usr/local/bin/rotate-logs.sh",
        "text",
        ["rotate-logs: compressed 14 files", "rotate-logs: done"],
        raw,
    )


# -- S/MIME -----------------------------------------------------------------------------------


def throwaway_pki(work: Path) -> None:
    """A CA and an S/MIME signer certificate (valid 2024-2124, so the committed message keeps
    verifying), written as PEM files into `work`; their keys never leave it."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp-graph-gateway corpus CA")])
    signer_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "Contoso Payroll"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "payroll@contoso.com"),
        ]
    )
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    end = datetime.datetime(2124, 1, 1, tzinfo=datetime.UTC)

    def usage(*, signer: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=signer,
            content_commitment=signer,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=not signer,
            crl_sign=not signer,
            encipher_only=False,
            decipher_only=False,
        )

    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(signer=False), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    signer = (
        x509.CertificateBuilder()
        .subject_name(signer_name)
        .issuer_name(ca_name)
        .public_key(signer_key.public_key())
        .serial_number(2)
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(signer=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("payroll@contoso.com")]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (work / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (work / "signer.pem").write_bytes(signer.public_bytes(serialization.Encoding.PEM))
    (work / "signer.key").write_bytes(
        signer_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def app_smime_signed() -> Msg:
    """Signed with a throwaway CA made here; only its certificate is kept (smime-ca.pem)."""
    pdf = fake_pdf(117, 8_000, "Contoso Payroll")
    content = entity(
        head('Content-Type: multipart/mixed; boundary="smime-inner-0001"'),
        multipart(
            "smime-inner-0001",
            [
                entity(
                    head(
                        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"
                    ),
                    b"Payroll summary for March 2024 is attached.\r\n"
                    b"This message is signed; do not alter it.\r\n",
                ),
                entity(
                    head(
                        'Content-Type: application/pdf; name="payroll-2024-03.pdf"',
                        "Content-Transfer-Encoding: base64",
                        'Content-Disposition: attachment; filename="payroll-2024-03.pdf"',
                    ),
                    b64(pdf),
                ),
            ],
        ),
    )
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        throwaway_pki(work)
        signed = subprocess.run(
            [
                "openssl",
                "cms",
                "-sign",
                "-signer",
                "signer.pem",
                "-inkey",
                "signer.key",
                "-md",
                "sha256",
                "-outform",
                "SMIME",
                "-crlfeol",
            ],
            cwd=work,
            input=content,
            check=True,
            capture_output=True,
        ).stdout
        (HERE / "smime-ca.pem").write_bytes((work / "ca.pem").read_bytes())
    # OpenSSL 3.0 ends the signature's base64 lines with a bare LF even with -crlfeol; a
    # mailer sends CRLF throughout (the signed content is CRLF already, so this changes nothing
    # that is signed).
    signed = signed.replace(CRLF, b"\n").replace(b"\n", CRLF)
    # openssl's output starts with MIME-Version and Content-Type; the mailer adds the rest.
    raw = (
        head(
            "From: Payroll <payroll@contoso.com>",
            "To: hr@contoso.com",
            "Subject: Signed: payroll summary March 2024",
            "Date: Fri, 29 Mar 2024 17:00:00 +0100",
            "Message-ID: <payroll-2024-03@payroll.contoso.com>",
        )
        + signed
    )
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    [signature] = [p for p in parsed.walk() if p.get_filename() == "smime.p7s"]
    return Msg(
        "app-smime-signed",
        "S/MIME: multipart/signed (application/pkcs7-signature, made by openssl cms -sign) over "
        "a text body and a PDF; envelope-only (Bcc) auditor; must stay MIME in every mode and "
        "still verify against smime-ca.pem after delivery",
        "payroll@contoso.com",
        ["hr@contoso.com", "auditor@contoso.com"],
        "Signed: payroll summary March 2024",
        "text",
        ["Payroll summary for March 2024 is attached."],
        raw,
        [
            Att("application/pdf", pdf, name="payroll-2024-03.pdf"),
            Att(signature.get_content_type(), signature.get_payload(decode=True), name="smime.p7s"),
        ],
        signed=True,
    )


MESSAGES = [
    hp_laserjet_scan_pdf,
    hp_scan_octet_stream_no_body,
    xerox_workcentre_scan,
    ricoh_scan_bare_lf_tiff,
    canon_imagerunner_scan_rfc2231,
    konica_minolta_scan_continuation,
    brother_scan_8bit_utf8,
    toshiba_estudio_same_names,
    kyocera_taskalfa_cp1252,
    app_utf8_cjk_emoji_alternative,
    app_utf8_arabic_qp,
    app_iso_8859_1_qp,
    app_iso_8859_2_base64,
    app_windows_1251_8bit,
    app_koi8_r_base64,
    app_iso_2022_jp_shift_jis,
    app_gbk_base64,
    app_big5_qp,
    app_euc_kr_related_cid,
    app_invoice_mixed_related_alternative,
    app_forwarded_rfc822,
    app_calendar_invite,
    app_backup_report_undisclosed,
    app_cron_no_mime_headers,
    app_smime_signed,
]


def main(argv: list[str]) -> None:
    """Write every message. The signed one is only re-signed (new CA, new bytes) when asked
    with --resign or when it is missing, so a rerun leaves the committed files unchanged."""
    resign = "--resign" in argv or not (HERE / "app-smime-signed.eml").exists()
    for build in MESSAGES:
        if build is app_smime_signed and not resign:
            print("app-smime-signed: kept (use --resign to sign it again)")
            continue
        message = build()
        (HERE / f"{message.name}.eml").write_bytes(message.raw)
        document = yaml.safe_dump(
            message.expectation(), allow_unicode=True, sort_keys=False, width=100
        )
        (HERE / f"{message.name}.yaml").write_text(document, encoding="utf-8")
        print(f"{message.name}: {len(message.raw):,} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
