"""The fast MAIL/RCPT path reader reads exactly what aiosmtpd's RFC 5322 parser reads."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.smtp.session import simple_path
from gateway.smtp_oauth.wire import DotStuffer, dot_stuffed

# Characters that matter to the parser: atext, specials, quotes, comments, spaces, non-ASCII.
ALPHABET = "aZ09.-_+=!#'`~{}|/?^$%&*@<>()[]\\\":;, \té"


def aiosmtpd_reads(arg: str) -> tuple[str | None, str | None]:
    return SMTP._getaddr(SimpleNamespace(local_part_limit=0), arg)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("<scanner@contoso.com>", ("scanner@contoso.com", "")),
        (
            "<scanner@contoso.com> SIZE=4096 BODY=8BITMIME",
            ("scanner@contoso.com", "SIZE=4096 BODY=8BITMIME"),
        ),
        ("<first.last+tag@mail.contoso.com>", ("first.last+tag@mail.contoso.com", "")),
    ],
)
def test_the_usual_paths_take_the_fast_way(arg: str, expected: tuple[str, str]) -> None:
    assert simple_path(arg) == expected
    assert aiosmtpd_reads(arg) == expected


@pytest.mark.parametrize(
    "arg",
    [
        "<>",
        '<"odd name"@contoso.com>',
        "<a..b@contoso.com>",
        "<.a@contoso.com>",
        "<a@[192.0.2.1]>",
        "<a@contoso.com>(comment) SIZE=1",
        "<a@contoso.com>SIZE=1",
        " <a@contoso.com>",
        "a@contoso.com",
        "<jörg@contoso.com>",
        "<@relay.example:a@contoso.com>",
        "<alice@example.org)<bob@example.org>",
    ],
)
def test_anything_unusual_is_left_to_the_full_parser(arg: str) -> None:
    assert simple_path(arg) is None


@given(st.text(alphabet=ALPHABET, max_size=40))
@example("<a@b>  \t SIZE=1")
@example("<a@b> ")
@example("<a@b>\t")
def test_fast_reader_agrees_with_aiosmtpd(arg: str) -> None:
    fast = simple_path(arg)
    if fast is not None:
        assert fast == aiosmtpd_reads(arg)


@given(
    st.from_regex(
        r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,8}(\.[a-z0-9-]{1,5}){0,2}@[a-z0-9-]{1,8}(\.[a-z]{1,4}){0,2}>( [A-Z]{1,6}=[0-9a-z]{1,6}){0,2}",
        fullmatch=True,
    )
)
def test_generated_simple_paths_are_read_fast_and_the_same(arg: str) -> None:
    fast = simple_path(arg)
    assert fast is not None
    assert fast == aiosmtpd_reads(arg)


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=60).map(lambda b: bytes(b".\r\nx"[c % 4] for c in b)),
    st.lists(st.integers(0, 60), max_size=6),
)
def test_dot_stuffing_a_piece_at_a_time_is_the_same_as_whole(
    message: bytes, cuts: list[int]
) -> None:
    """The SMTP OAuth transport stuffs a large message as it reads it: every split of the
    message into pieces gives the bytes the whole message would."""
    stuffer = DotStuffer()
    edges = [0, *sorted(min(c, len(message)) for c in cuts), len(message)]
    pieces = [message[a:b] for a, b in itertools.pairwise(edges)]
    streamed = b"".join(stuffer.feed(piece) for piece in pieces) + stuffer.end()
    assert streamed == dot_stuffed(message)
