"""The envelope decides who receives a MIME submission: Bcc injection and replacement."""

from __future__ import annotations

from email import message_from_bytes, policy

from hypothesis import given
from hypothesis import strategies as st

from gateway.mime.headers import full_header_addresses, quick_addresses
from gateway.mime.recipients import with_envelope_bcc

BASE = (
    b"From: Scanner <scanner@contoso.com>\r\n"
    b"To: Alice <alice@contoso.com>,\r\n Bob <BOB@Contoso.com>\r\n"
    b'Cc: "Carol, Ops" <carol@fabrikam.com>, Team: dave@fabrikam.com;\r\n'
    b"Subject: scan\r\n\r\nbody line\r\n.leading dot kept\r\n"
)


def recipients_of(message: bytes) -> dict[str, list[str]]:
    parsed = message_from_bytes(message, policy=policy.default)
    return {
        name: [a.addr_spec for h in parsed.get_all(name, []) for a in h.addresses]
        for name in ("to", "cc", "bcc")
    }


def test_envelope_only_recipients_become_bcc_and_nothing_else_changes() -> None:
    prepared = with_envelope_bcc(
        BASE,
        [
            "alice@contoso.com",
            "BOB@contoso.com",
            "carol@fabrikam.com",
            "dave@fabrikam.com",
            "erin@contoso.com",
            "frank@other.org",
        ],
    )
    assert prepared.bcc == ("erin@contoso.com", "frank@other.org")
    assert prepared.left_out == ()
    assert prepared.message == b"Bcc: erin@contoso.com, frank@other.org\r\n" + BASE


def test_headers_that_match_the_envelope_are_left_alone() -> None:
    envelope = ["alice@contoso.com", "BOB@contoso.com", "carol@FABRIKAM.com", "dave@fabrikam.com"]
    prepared = with_envelope_bcc(BASE, envelope)
    assert prepared.message == BASE
    assert prepared.bcc == ()


def test_header_recipients_outside_the_envelope_are_not_sent_to() -> None:
    prepared = with_envelope_bcc(BASE, ["alice@contoso.com", "dave@fabrikam.com"])
    found = recipients_of(prepared.message)
    assert found == {"to": ["alice@contoso.com"], "cc": ["dave@fabrikam.com"], "bcc": []}
    assert sorted(prepared.left_out) == ["BOB@Contoso.com", "carol@fabrikam.com"]
    parsed = message_from_bytes(prepared.message, policy=policy.default)
    assert str(parsed["To"]) == "Alice <alice@contoso.com>"  # the display name is kept
    assert prepared.message.endswith(b"Subject: scan\r\n\r\nbody line\r\n.leading dot kept\r\n")


def test_non_ascii_display_names_survive_a_rewrite() -> None:
    message = (
        b"From: s@contoso.com\r\nTo: =?utf-8?q?J=C3=B6rg?= <jorg@contoso.com>, "
        b"x@evil.org\r\nSubject: x\r\n\r\nbody\r\n"
    )
    prepared = with_envelope_bcc(message, ["jorg@contoso.com"])
    parsed = message_from_bytes(prepared.message, policy=policy.default)
    [address] = parsed["To"].addresses
    assert (address.display_name, address.addr_spec) == ("J\u00f6rg", "jorg@contoso.com")
    assert prepared.message.isascii()


def test_existing_bcc_header_is_replaced_by_the_envelope() -> None:
    message = BASE.replace(b"Subject:", b"Bcc: leaked@evil.org,\r\n\tother@evil.org\r\nSubject:")
    prepared = with_envelope_bcc(message, ["alice@contoso.com", "erin@contoso.com"])
    assert recipients_of(prepared.message)["bcc"] == ["erin@contoso.com"]
    assert b"evil.org" not in prepared.message


def test_malformed_to_header_is_not_trusted() -> None:
    message = b"From: a@contoso.com\r\nTo: alice@example.org)<bob@example.org>\r\n\r\nx\r\n"
    prepared = with_envelope_bcc(message, ["bob@example.org"])
    assert prepared.headers_untrusted
    found = recipients_of(prepared.message)
    assert found["to"] + found["cc"] + found["bcc"] == ["bob@example.org"]
    assert b"alice@example.org" not in prepared.message.split(b"\r\n\r\n")[0]


def test_many_recipients_fold_under_78_columns() -> None:
    envelope = [f"user{i:03d}@example.org" for i in range(40)]
    prepared = with_envelope_bcc(b"From: a@b.org\r\n\r\nx\r\n", envelope)
    header = prepared.message.split(b"\r\n\r\n")[0]
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))
    assert recipients_of(prepared.message)["bcc"] == envelope


addresses = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.(org|com)", fullmatch=True)


@given(to=st.lists(addresses, max_size=5), envelope=st.lists(addresses, min_size=1, max_size=8))
def test_every_envelope_recipient_is_addressed_exactly_once(
    to: list[str], envelope: list[str]
) -> None:
    header = b"To: " + ", ".join(to).encode() + b"\r\n" if to else b""
    message = b"From: s@contoso.com\r\n" + header + b"Subject: x\r\n\r\nbody\r\n"
    prepared = with_envelope_bcc(message, envelope)
    found = recipients_of(prepared.message)
    addressed = found["to"] + found["cc"] + found["bcc"]
    assert set(addressed) == set(envelope)  # nobody outside the envelope
    assert len(found["bcc"]) == len(set(found["bcc"]))
    assert not set(found["bcc"]) & set(found["to"])  # nobody twice (Exchange merges To dups)


display = st.one_of(
    st.just(""),
    st.from_regex(r"[A-Za-z][A-Za-z .]{0,12}", fullmatch=True),
    st.from_regex(r'"[A-Za-z@,<> ]{1,12}"', fullmatch=True),
    st.just("=?utf-8?q?J=C3=B6rg?="),
)
mailbox = st.builds(
    lambda name, address: f"{name} <{address}>" if name.strip() else address, display, addresses
)


@given(st.lists(mailbox, min_size=1, max_size=6))
def test_quick_reader_agrees_with_the_standard_parser(entries: list[str]) -> None:
    value = ", ".join(entries)
    quick = quick_addresses(value)
    full, suspicious = full_header_addresses(f"To: {value}\r\n\r\n".encode(), ("to",))
    if quick is not None:
        assert not suspicious
        assert quick == full
