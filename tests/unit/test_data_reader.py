"""The chunked DATA reader: only CRLF.CRLF ends data; dot-stuffing removed; bare LF normalised."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp.data import Normalizer, read_data, unstuff_and_normalize


def stuffed(message: bytes) -> bytes:
    """What a client sends for `message` (CRLF lines): dots doubled at line starts, then .CRLF."""
    lines = message.split(b"\r\n")
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines) + b".\r\n"


async def feed(data: bytes, limit: int = 10_000_000, chunks: int = 7) -> tuple[bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=1001)
    step = max(1, len(data) // chunks)
    for start in range(0, len(data), step):
        reader.feed_data(data[start : start + step])
    reader.feed_eof()
    content, _ = await read_data(reader, limit)
    return content, await reader.read()


lines = st.lists(st.from_regex(rb"[.a-z ]{0,20}", fullmatch=True), min_size=1, max_size=20)


@given(lines)
def test_what_a_client_stuffs_comes_back_unchanged(parts: list[bytes]) -> None:
    message = b"\r\n".join(parts) + b"\r\n"
    content, rest = asyncio.run(feed(stuffed(message) + b"QUIT\r\n"))
    assert content == message
    assert rest == b"QUIT\r\n"  # pipelined commands stay in the stream


async def test_empty_message_and_a_lone_dot_line() -> None:
    assert await feed(b".\r\n") == (b"", b"")
    assert (await feed(b"a\r\n..\r\nb\r\n.\r\n"))[0] == b"a\r\n.\r\nb\r\n"


async def test_bare_lf_scan_with_long_lines_is_accepted_and_normalised() -> None:
    pdf_line = b"%PDF-1.7 " + b"x" * 50_000
    content, _ = await feed(b"Subject: scan\n\n" + pdf_line + b"\nend\r\n.\r\n")
    assert content == b"Subject: scan\r\n\r\n" + pdf_line + b"\r\nend\r\n"


@pytest.mark.parametrize("fake", [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"])
async def test_only_crlf_dot_crlf_ends_data(fake: bytes) -> None:
    content, rest = await feed(b"one" + fake + b"MAIL FROM:<x@y.z>\r\n.\r\nNOOP\r\n")
    assert content is not None and b"MAIL FROM:<x@y.z>" in content
    assert rest == b"NOOP\r\n"


async def test_oversized_message_is_dropped_but_the_session_goes_on() -> None:
    content, rest = await feed(b"y" * 500_000 + b"\r\n.\r\nRSET\r\n", limit=100_000, chunks=50)
    assert content is None
    assert rest == b"RSET\r\n"


def test_normalise_leaves_crlf_messages_alone() -> None:
    message = b"A: b\r\n\r\nbody\rwith bare CR\r\n"
    assert unstuff_and_normalize(message) == message


async def feed_in_reads(pieces: list[bytes], limit: int = 10_000_000) -> tuple[bytes | None, bytes]:
    """Deliver `pieces` as separate reads (the reader waits for each), as a slow client does."""
    reader = asyncio.StreamReader(limit=1001)

    async def client() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            for _ in range(3):
                await asyncio.sleep(0)
        reader.feed_eof()

    sending = asyncio.create_task(client())
    content, _ = await read_data(reader, limit)
    await sending
    return content, await reader.read()


@given(lines, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_the_end_marker_is_found_however_the_reads_split_it(
    parts: list[bytes], cuts: list[int]
) -> None:
    message = b"\r\n".join(parts) + b"\r\n"
    stream = stuffed(message) + b"QUIT\r\n"
    points = sorted({min(cut, len(stream)) for cut in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points) if b > a]
    content, rest = asyncio.run(feed_in_reads(pieces))
    assert content == message
    assert rest == b"QUIT\r\n"


async def test_a_dot_and_its_line_end_in_separate_reads_end_an_empty_message() -> None:
    assert await feed_in_reads([b".", b"\r\n", b"NOOP\r\n"]) == (b"", b"NOOP\r\n")
    assert await feed_in_reads([b"a\r", b"\n.", b"\r", b"\nRSET\r\n"]) == (b"a\r\n", b"RSET\r\n")


def _reference_normalise(data: bytes) -> bytes:
    """The whole-message rule, as Postfix's normalize reads a DATA section."""
    if data.count(b"\n") != data.count(b"\r\n"):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return (b"\r\n" + data).replace(b"\r\n.", b"\r\n")[2:]


@settings(max_examples=1000, deadline=None)
@given(
    st.binary(max_size=40).map(lambda b: bytes(b".\r\nx"[c % 4] for c in b)),
    st.lists(st.integers(0, 40), max_size=6),
)
def test_normalising_a_piece_at_a_time_is_the_same_as_whole(data: bytes, cuts: list[int]) -> None:
    """DATA is normalised as it arrives: however it is cut into reads, the message is the
    one the whole section gives (regressions from fuzzing: a read ending after CRLF + dot
    lost a second dot; a CRLF split between reads left the next bare LF alone)."""
    normalizer = Normalizer()
    edges = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(edges)]
    assert b"".join(normalizer.feed(piece) for piece in pieces) == _reference_normalise(data)
