"""The `clients` and `users` sections: who may connect or log in, and as whom they may send."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config.model import (
    Client,
    User,
)
from gateway.config.reader import Reader, join, read_mailbox


def _read_senders(reader: Reader, node: Mapping[str, Any], path: str) -> tuple[str, ...]:
    senders = reader.string_list(node, "senders", path)
    for index, sender in enumerate(senders):
        valid = sender == "*" or (
            sender.count("@") == 1 and sender.rsplit("@", 1)[1] and " " not in sender
        )
        if not valid:
            reader.issue(
                join(join(path, "senders"), index),
                f"not a sender pattern: {sender!r}",
                "use an address, *@domain or *",
            )
    if "senders" not in node:
        reader.issue(
            join(path, "senders"),
            "is required",
            "list the addresses this identity may send as (address, *@domain or *)",
        )
    return tuple(sender.lower() for sender in senders)


def read_client(reader: Reader, value: object, path: str) -> Client | None:
    """One `clients[]` entry, or None when it is unusable (the issues say why)."""
    node = reader.mapping(
        value,
        path,
        (
            "name",
            "networks",
            "senders",
            "send_as",
            "recipients",
            "reply_to_sender",
            "save_to_sent_items",
        ),
    )
    if node is None:
        return None
    name = reader.required_string(node, "name", path, "give each client a name for the logs")
    send_as = read_mailbox(reader, node, "send_as", path)
    networks = reader.networks(node, "networks", path)
    if not networks:
        reader.issue(
            join(path, "networks"),
            "at least one network is required",
            "e.g. networks: [192.168.10.0/24]",
        )
    return Client(
        name,
        networks,
        _read_senders(reader, node, path),
        send_as,
        _read_recipients(reader, node, path),
        reader.boolean(node, "reply_to_sender", path, True),
        reader.optional_boolean(node, "save_to_sent_items", path),
    )


def read_user(reader: Reader, value: object, path: str) -> User | None:
    """One `users[]` entry, or None when it is unusable (the issues say why)."""
    node = reader.mapping(
        value,
        path,
        (
            "username",
            "password_hash",
            "password_hash_file",
            "senders",
            "send_as",
            "recipients",
            "reply_to_sender",
            "save_to_sent_items",
        ),
    )
    if node is None:
        return None
    username = reader.required_string(node, "username", path, "the SMTP AUTH login name")
    password_hash = reader.secret(node, "password_hash", path, required=True, what="password hash")
    if password_hash is not None and not password_hash.reveal().startswith("$scrypt$"):
        reader.issue(
            join(path, "password_hash"),
            "is not a password hash",
            "create one with: smtp-graph-gateway hash-password",
        )
    senders = _read_senders(reader, node, path)
    if password_hash is None:
        return None
    return User(
        username,
        password_hash,
        senders,
        read_mailbox(reader, node, "send_as", path),
        _read_recipients(reader, node, path),
        reader.boolean(node, "reply_to_sender", path, True),
        reader.optional_boolean(node, "save_to_sent_items", path),
    )


def _read_recipients(reader: Reader, node: Mapping[str, Any], path: str) -> tuple[str, ...]:
    patterns = reader.string_list(node, "recipients", path)
    for index, pattern in enumerate(patterns):
        if pattern != "*" and (pattern.count("@") != 1 or " " in pattern):
            reader.issue(
                join(join(path, "recipients"), index),
                f"not a recipient pattern: {pattern!r}",
                "use an address, *@domain or *",
            )
    return tuple(pattern.lower() for pattern in patterns)
