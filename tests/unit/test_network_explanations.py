"""The remedies `bind_issue` gives for each reason a socket cannot listen (the causes that
cannot be produced on a test machine running as root, such as port 25 without the
capability, are given as the errno the kernel returns)."""

from __future__ import annotations

import errno
import os

import pytest

from gateway.network import bind_issue


@pytest.mark.parametrize(
    ("number", "cause", "remedy"),
    [
        (errno.EADDRINUSE, "Address already in use", "ss -ltnp 'sport = :25'"),
        (errno.EACCES, "Permission denied", "CAP_NET_BIND_SERVICE"),
        (errno.EADDRNOTAVAIL, "Cannot assign requested address", "this host has no such address"),
    ],
)
def test_each_bind_failure_names_where_the_address_the_cause_and_the_remedy(
    number: int, cause: str, remedy: str
) -> None:
    error = OSError(number, f"error while attempting to bind on address: {os.strerror(number)}")
    issue = bind_issue(error, "smtp.listeners[0]", "192.0.2.1", 25)
    assert issue.path == "smtp.listeners[0]"
    assert issue.message == f"cannot listen on 192.0.2.1:25: {cause}"
    assert remedy in issue.hint


def test_an_ipv6_address_is_written_in_brackets() -> None:
    issue = bind_issue(OSError(errno.EADDRINUSE, "x"), "http.listen", "::1", 8025)
    assert issue.message.startswith("cannot listen on [::1]:8025:")
