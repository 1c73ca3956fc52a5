"""A message body read from its file piece by piece answers like the bytes it holds."""

from __future__ import annotations

import base64
import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mime.parts import iter_decoded, parse_tree
from gateway.spool.body import FileBody

ALPHABET = b"ab\r\n-=."


def body_of(data: bytes, offset: int, block: int) -> FileBody:
    handle, name = tempfile.mkstemp()
    os.write(handle, b"x" * offset + data + b"trailer")
    os.unlink(name)
    return FileBody(handle, offset, len(data), block=block)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300).map(lambda b: bytes(ALPHABET[c % len(ALPHABET)] for c in b)),
    sub=st.sampled_from([b"a", b"ab", b"\r\n", b"\r\n-", b"--b", b"", b"a\r\nb", b"zz"]),
    start=st.integers(-20, 320),
    end=st.one_of(st.none(), st.integers(-20, 320)),
    block=st.integers(1, 40),
    offset=st.integers(0, 5),
)
def test_find_rfind_and_slices_match_bytes(
    *, data: bytes, sub: bytes, start: int, end: int | None, block: int, offset: int
) -> None:
    body = body_of(data, offset, block)
    try:
        assert body.find(sub, start, end) == data.find(sub, start, end)
        assert body.rfind(sub, start, end) == data.rfind(sub, start, end)
        stop = len(data) if end is None else end
        assert body[start:stop] == data[start:stop]
        assert len(body) == len(data) and bytes(body) == data
    finally:
        body.close()


def test_a_mime_tree_and_its_attachment_read_from_a_file() -> None:
    payload = bytes(range(256)) * 40
    encoded = base64.encodebytes(payload)
    message = (
        b"From: a@contoso.com\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n--XX\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--XX--\r\n"
    )
    body = body_of(message, 3, block=64)
    try:
        tree, expected = parse_tree(body), parse_tree(message)
        assert [leaf.content_type for leaf in tree.leaves()] == ["text/plain", "application/pdf"]
        assert [(p.body_start, p.body_end) for p in tree.leaves()] == [
            (p.body_start, p.body_end) for p in expected.leaves()
        ]
        attachment = list(tree.leaves())[1]
        assert b"".join(iter_decoded(body, attachment, 1000)) == payload
    finally:
        body.close()
