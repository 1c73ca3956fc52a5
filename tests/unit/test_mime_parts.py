"""The MIME tree as byte offsets: `parse_tree` finds the leaves the standard library finds, and
`decoded`/`iter_decoded`/`decoded_size` give the bytes `get_payload(decode=True)` gives.

Random trees are built with the standard library and serialised with CRLF line endings, as SMTP
delivers them; the standard library's own parse of those bytes is the oracle.
"""

from __future__ import annotations

import base64
import email
import string
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage, Message, MIMEPart
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gateway.mime.parts import Part, decoded, decoded_size, iter_decoded, parse_tree, raw_body

SMTP = policy.SMTP
# RFC 2046 bchars: any of them, a space anywhere but last. A leading space is left to its own test
# (`test_boundary_with_a_leading_space_is_split`), so the property tests cover the rest.
BCHARS = string.ascii_letters + string.digits + "'()+_,-./:=? "


# --- generating random MIME trees -----------------------------------------------------------


@dataclass
class Built:
    """A message built with the standard library, and what the test knows about it."""

    data: bytes
    boundaries: list[str] = field(default_factory=list)
    embedded: list[bytes] = field(default_factory=list)  # bytes of each message/rfc822 leaf


boundary_prefixes = st.text(alphabet=BCHARS, max_size=40).map(lambda s: s.lstrip(" "))
text_lines = st.lists(
    st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), max_size=60), max_size=5
)
ascii_lines = st.lists(
    st.text(
        alphabet=string.printable.replace("\r", "")
        .replace("\n", "")
        .replace("\x0b", "")
        .replace("\x0c", ""),
        max_size=60,
    ),
    max_size=5,
)
# 8bit data is line-oriented (no NUL, no bare CR or LF): lines joined by CRLF, as SMTP carries it.
eight_bit_lines = st.lists(
    st.binary(max_size=60).map(lambda b: b.translate(None, b"\x00\r\n")), max_size=5
)
names = st.text(alphabet=string.ascii_letters + string.digits + " ._-", min_size=1, max_size=20)

leaf_specs = st.one_of(
    st.tuples(
        st.just("text"),
        st.sampled_from(["plain", "html", "calendar", "csv"]),
        st.one_of(
            st.tuples(st.just("7bit"), ascii_lines),
            st.tuples(st.sampled_from(["8bit", "quoted-printable", "base64"]), text_lines),
        ),
        st.one_of(st.none(), names),
    ),
    st.tuples(
        st.just("bytes"),
        st.sampled_from(["application/octet-stream", "image/png", "application/pdf", "audio/x-y"]),
        st.one_of(
            st.tuples(st.sampled_from(["base64", "quoted-printable"]), st.binary(max_size=300)),
            st.tuples(st.just("8bit"), eight_bit_lines),
        ),
        st.one_of(st.none(), names),
    ),
)


def multipart_specs(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.tuples(
        st.just("multipart"),
        st.sampled_from(["mixed", "alternative", "related", "digest", "parallel"]),
        st.lists(children, min_size=1, max_size=4),
        boundary_prefixes,
        st.booleans(),  # the boundary starts with the parent's (`--B` vs `--Bx` lines)
        st.one_of(st.none(), ascii_lines),  # preamble
        st.one_of(st.none(), ascii_lines),  # epilogue
    )


def message_specs(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.tuples(st.just("message"), children, st.booleans())  # implicit type in a digest


tree_specs = st.recursive(
    leaf_specs,
    lambda children: st.one_of(
        multipart_specs(children), multipart_specs(children), message_specs(children)
    ),
    max_leaves=10,
)


class Builder:
    def __init__(self) -> None:
        self.boundaries: list[str] = []
        self.contents: list[bytes] = []  # every leaf body as given, to rule out boundary clashes

    def build(
        self, spec: Any, part: Message, parent_boundary: str = "", in_digest: bool = False
    ) -> None:
        kind = spec[0]
        if kind == "text":
            _, subtype, (cte, lines), name = spec
            text = "\n".join(lines)
            part.set_content(text, subtype=subtype, charset="utf-8", cte=cte)
            self._name(part, name)
            self.contents.append(text.encode())
        elif kind == "bytes":
            _, content_type, (cte, content), name = spec
            payload = b"\r\n".join(content) if cte == "8bit" else content
            maintype, subtype = content_type.split("/")
            part.set_content(payload, maintype, subtype, cte=cte)
            self._name(part, name)
            self.contents.append(payload)
        elif kind == "message":
            _, inner_spec, implicit = spec
            inner = EmailMessage(policy=SMTP)
            inner["Subject"] = "inner"
            self.build(inner_spec, inner, parent_boundary)
            part.set_content(inner)
            if in_digest and implicit:  # a digest's parts are message/rfc822 unless they say
                del part["Content-Type"]
                part.set_default_type("message/rfc822")
        else:
            _, subtype, children, prefix, extend, preamble, epilogue = spec
            boundary = (parent_boundary if extend else "") + prefix
            boundary = f"{boundary}={len(self.boundaries)}."[-70:]
            self.boundaries.append(boundary)
            part["Content-Type"] = f"multipart/{subtype}"
            part.set_boundary(boundary)
            for child_spec in children:
                child = MIMEPart(policy=SMTP)
                if subtype == "digest":
                    child.set_default_type("message/rfc822")
                self.build(child_spec, child, boundary, in_digest=subtype == "digest")
                part.attach(child)
            part.preamble = "\r\n".join(preamble) if preamble is not None else None
            part.epilogue = "\r\n".join(epilogue) if epilogue is not None else None
            for text in (part.preamble, part.epilogue):
                if text:
                    self.contents.append(text.encode())

    @staticmethod
    def _name(part: Message, name: str | None) -> None:
        if name is not None:
            part.add_header("Content-Disposition", "attachment", filename=name)


@st.composite
def messages(draw: st.DrawFn) -> Built:
    spec = draw(tree_specs)
    builder = Builder()
    root = EmailMessage(policy=SMTP)
    root["From"] = "Sender <sender@example.com>"
    root["To"] = "rcpt@example.org"
    root["Subject"] = "random tree"
    builder.build(spec, root)
    data = root.as_bytes(policy=SMTP)
    added = b"" if data.endswith(b"\r\n") else b"\r\n"  # SMTP DATA ends with a line break
    # A body line that happens to be a delimiter makes the message ambiguous: not our concern.
    for content in builder.contents:
        lines = content.replace(b"\r\n", b"\n").split(b"\n")
        for boundary in builder.boundaries:
            assume(not any(line.startswith(b"--" + boundary.encode()) for line in lines))
    embedded = [inner.as_bytes(policy=SMTP) for inner in _inner_messages(root)]
    if added and root.get_content_type() == "message/rfc822":
        embedded[0] += added  # the line break added to the message ends the attached message
    return Built(data + added, builder.boundaries, embedded)


def _inner_messages(message: Message) -> list[Message]:
    """The embedded messages of message/rfc822 leaves, in document order."""
    found = []
    if message.get_content_maintype() == "multipart":
        for child in message.get_payload():
            found.extend(_inner_messages(child))
    elif message.get_content_type() == "message/rfc822":
        found.append(message.get_payload(0))
    return found


def std_leaves(message: Message) -> list[Message]:
    """The standard library's leaves in document order (an attached message is one leaf)."""
    if message.get_content_maintype() == "multipart" and message.is_multipart():
        return [leaf for child in message.get_payload() for leaf in std_leaves(child)]
    return [message]


# --- properties ------------------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(built=messages())
def test_parse_tree_finds_the_leaves_the_standard_library_finds(built: Built) -> None:
    data = built.data
    expected = std_leaves(email.message_from_bytes(data, policy=SMTP))

    leaves = list(parse_tree(data).leaves())

    assert [leaf.content_type for leaf in leaves] == [p.get_content_type() for p in expected]
    assert [leaf.headers.get_filename() for leaf in leaves] == [p.get_filename() for p in expected]
    inner = iter(built.embedded)
    for leaf, part in zip(leaves, expected, strict=True):
        if leaf.content_type == "message/rfc822":
            assert raw_body(data, leaf) == next(inner)
            assert decoded(data, leaf) == raw_body(data, leaf)
        else:
            assert decoded(data, leaf) == part.get_payload(decode=True)
    assert next(inner, None) is None  # every embedded message was found


@FAST
@given(built=messages(), size=st.integers(min_value=1, max_value=70))
def test_iter_decoded_pieces_join_to_decoded(built: Built, size: int) -> None:
    data = built.data
    for part in _all_parts(parse_tree(data)):
        whole = decoded(data, part)
        pieces = list(iter_decoded(data, part, size))

        assert b"".join(pieces) == whole
        assert all(len(piece) == size for piece in pieces[:-1])
        assert all(0 < len(piece) <= size for piece in pieces[-1:])
        assert decoded_size(data, part) == len(whole)


def test_a_body_of_several_megabytes_decodes_across_read_steps() -> None:
    """Bodies are decoded a step at a time (a megabyte of base64): line breaks, a stray
    character and the end of the data fall anywhere relative to the steps."""
    payload = bytes(range(256)) * 12_000 + b"tail"  # about 3 MB
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    encoded = encoded[:1_048_570] + b"!" + encoded[1_048_570:]  # skipped, as mail readers do
    data = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n" + encoded
    part = parse_tree(data)
    assert decoded(data, part) == payload
    assert decoded_size(data, part) == len(payload)
    assert b"".join(iter_decoded(data, part, 3_932_160)) == payload


def _all_parts(part: Part) -> list[Part]:
    return [part, *(p for child in part.children for p in _all_parts(child))]


@settings(max_examples=60, deadline=None)
@given(
    content=st.binary(max_size=400),
    junk=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=600),
            st.sampled_from([b" ", b"\r\n", b"\n", b"\t", b"!", b"*", b"\x00", b"\xff", b"~"]),
        ),
        max_size=8,
    ),
    strip_padding=st.booleans(),
)
def test_base64_with_junk_and_without_padding_decodes_leniently(
    content: bytes, junk: list[tuple[int, bytes]], strip_padding: bool
) -> None:
    encoded = bytearray(base64.encodebytes(content).replace(b"\n", b"\r\n"))
    if strip_padding:
        encoded = bytearray(encoded.replace(b"=", b""))
    for position, char in junk:
        encoded[min(position, len(encoded)) : min(position, len(encoded))] = char
    data = (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + bytes(encoded)
    )

    tree = parse_tree(data)

    assert decoded(data, tree) == content
    assert decoded_size(data, tree) == len(content)


# --- hand-written cases ---------------------------------------------------------------------


def crlf(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")


def bodies(data: bytes) -> list[bytes]:
    return [decoded(data, leaf) for leaf in parse_tree(data).leaves()]


def types(data: bytes) -> list[str]:
    return [leaf.content_type for leaf in parse_tree(data).leaves()]


def test_missing_close_delimiter_ends_the_last_part_at_the_end() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n\none\n--B\n"
        b"Content-Type: text/html\n\n<p>two</p>\n"
    )

    assert types(data) == ["text/plain", "text/html"]
    assert bodies(data) == [b"one", b"<p>two</p>\r\n"]


def test_preamble_and_epilogue_are_not_parts() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\nThis is a MIME message.\n"
        b"--not a delimiter\n\n--B\n\none\n--B\n\ntwo\n\n--B--\nepilogue\n--B\nafter\n"
    )

    assert bodies(data) == [b"one", b"two\r\n"]


def test_a_longer_line_starting_with_the_boundary_is_content() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n\none\n--Bx\n--B--x\n"
        b"--B x\n--B\n\ntwo\n--B--\n"
    )

    assert bodies(data) == [b"one\r\n--Bx\r\n--B--x\r\n--B x", b"two"]


def test_a_boundary_inside_a_line_is_content() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n\none --B\nx--B--\n--B\n\ntwo\n--B--\n"
    )

    assert bodies(data) == [b"one --B\r\nx--B--", b"two"]


def test_boundary_lines_may_end_in_blanks() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\n--B \t\n\none\n--B  \n\ntwo\n"
        b"--B--\t \nepilogue\n"
    )

    assert bodies(data) == [b"one", b"two"]


def test_bare_lf_message_is_split_the_same_way() -> None:
    data = (
        b'Content-Type: multipart/alternative; boundary="a b"\n\n--a b\n'
        b"Content-Type: text/plain\n\nplain\n\n--a b\nContent-Type: text/html\n"
        b"Content-Transfer-Encoding: base64\n\nPGI+aHRtbDwvYj4=\n--a b--\n"
    )

    assert types(data) == ["text/plain", "text/html"]
    assert bodies(data) == [b"plain\n", b"<b>html</b>"]


def test_nested_multipart_without_its_close_delimiter_ends_at_the_parent_delimiter() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=outer\n\n--outer\n"
        b"Content-Type: multipart/alternative; boundary=inner\n\n--inner\n\nplain\n"
        b"--inner\nContent-Type: text/html\n\n<p>html</p>\n"
        b"--outer\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n"
        b"JVBERi0=\n--outer--\n"
    )

    tree = parse_tree(data)

    assert [child.content_type for child in tree.children] == [
        "multipart/alternative",
        "application/pdf",
    ]
    assert types(data) == ["text/plain", "text/html", "application/pdf"]
    assert bodies(data) == [b"plain", b"<p>html</p>", b"%PDF-"]


def test_multipart_without_boundary_is_one_text_leaf() -> None:
    data = crlf(b"Content-Type: multipart/mixed\n\n--B\n\none\n--B--\n")

    tree = parse_tree(data)

    assert tree.children == ()
    assert tree.content_type == "text/plain"
    assert decoded(data, tree) == b"--B\r\n\r\none\r\n--B--\r\n"


def test_multipart_whose_boundary_never_appears_is_one_text_leaf() -> None:
    data = crlf(b"Content-Type: multipart/mixed; boundary=B\n\nonly text\n")

    assert types(data) == ["text/plain"]
    assert bodies(data) == [b"only text\r\n"]


def test_header_section_without_blank_line_ends_at_the_first_non_field_line() -> None:
    data = crlf(b"Subject: no blank line\nX-Folded: a\n b\nThis line is the body\nmore\n")

    tree = parse_tree(data)

    assert tree.headers["Subject"] == "no blank line"
    assert tree.headers["X-Folded"] == "a b"
    assert decoded(data, tree) == b"This line is the body\r\nmore\r\n"


def test_part_header_section_without_blank_line() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/html\n"
        b"<p>body</p>\n--B--\n"
    )

    assert types(data) == ["text/html"]
    assert bodies(data) == [b"<p>body</p>"]


def test_empty_body_parts() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n"
        b"Content-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n"
        b"\n\n--B\n--B\nContent-Type: text/html\n\n--B\n\n\n--B--\n"
    )

    leaves = list(parse_tree(data).leaves())

    assert [leaf.content_type for leaf in leaves] == [
        "application/pdf",
        "text/plain",
        "text/html",
        "text/plain",
    ]
    assert [decoded(data, leaf) for leaf in leaves] == [b"", b"", b"", b""]
    assert [decoded_size(data, leaf) for leaf in leaves] == [0, 0, 0, 0]
    assert leaves[0].headers.get_filename() == "a.pdf"
    assert list(iter_decoded(data, leaves[0], 10)) == []


def test_digest_parts_default_to_attached_messages() -> None:
    data = crlf(
        b"Content-Type: multipart/digest; boundary=D\n\n--D\n\nSubject: first\n\nhello\n"
        b"--D\nContent-Type: text/plain\n\nnot a message\n--D--\n"
    )

    leaves = list(parse_tree(data).leaves())

    assert [leaf.content_type for leaf in leaves] == ["message/rfc822", "text/plain"]
    assert raw_body(data, leaves[0]) == b"Subject: first\r\n\r\nhello"


def test_attached_message_is_one_leaf_holding_the_message_bytes() -> None:
    inner = crlf(b"Subject: inner\nContent-Type: multipart/mixed; boundary=I\n\n--I\n\na\n--I--\n")
    data = (
        crlf(
            b"Content-Type: multipart/mixed; boundary=O\n\n--O\n\nouter\n--O\n"
            b"Content-Type: message/rfc822\n\n"
        )
        + inner
        + crlf(b"\n--O--\n")
    )

    leaves = list(parse_tree(data).leaves())

    assert [leaf.content_type for leaf in leaves] == ["text/plain", "message/rfc822"]
    assert decoded(data, leaves[1]) == inner


def test_transfer_encoding_is_case_insensitive_and_unknown_ones_are_raw() -> None:
    data = crlf(
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n"
        b"Content-Transfer-Encoding: BASE64 \n\naGk=\n--B\n"
        b"Content-Transfer-Encoding: Quoted-Printable\n\ncaf=C3=A9=\n!\n--B\n"
        b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 a\n--B--\n"
    )

    assert bodies(data) == [b"hi", "café!".encode(), b"begin 644 a"]


def test_base64_decoding_stops_at_padding_and_drops_a_dangling_character() -> None:
    data = crlf(b"Content-Transfer-Encoding: base64\n\nQUJD\nRA==\nignored after padding\n")
    dangling = b"Content-Transfer-Encoding: base64\r\n\r\nQUJDR"

    assert decoded(data, parse_tree(data)) == b"ABCD"
    assert decoded(dangling, parse_tree(dangling)) == b"ABC"


def test_parse_tree_of_a_slice_reads_only_that_slice() -> None:
    inner = crlf(b"Subject: inner\n\nbody\n")
    data = b"junk before\r\n" + inner + b"junk after"

    tree = parse_tree(data, 13, 13 + len(inner))

    assert tree.headers["Subject"] == "inner"
    assert decoded(data, tree) == b"body\r\n"


def test_boundary_with_a_leading_space_is_split() -> None:
    """Regression: RFC 2046 allows a space anywhere in a
    boundary except at the end, so `boundary=" lead"` makes delimiter lines `-- lead`. parse_tree
    looks for `--lead`, finds none, and reads the whole multipart as one text/plain leaf, so the
    attachment is lost (the standard library splits it)."""
    message = EmailMessage(policy=SMTP)
    message.set_content("hello")
    message.add_attachment(b"%PDF-", maintype="application", subtype="pdf", filename="a.pdf")
    message.set_boundary(" lead")
    data = message.as_bytes(policy=SMTP)
    assert b"\r\n-- lead\r\n" in data

    assert types(data) == ["text/plain", "application/pdf"]
    assert bodies(data) == [b"hello\r\n", b"%PDF-"]
