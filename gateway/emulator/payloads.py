"""Request bodies of the mail routes: parse, validate, and apply Graph's rules beyond the schema.

Action parameters (`Message`, `SaveToSentItems`, `AttachmentItem`) are matched without regard to
case, since Microsoft's docs send camelCase and its SDKs PascalCase. The rules Graph applies on
top of the types, each with Graph's code: custom headers must be named `x-…` and there may be 1
to 5 of them; a message needs at least one resolvable recipient when it is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.emulator.schema import BODY_READ, NS, SchemaError, as_bool, validate

MAX_CUSTOM_HEADERS = 5


@dataclass(frozen=True)
class SendMailRequest:
    message: dict[str, Any]
    save_to_sent_items: bool


def parse_json(body: bytes) -> Any:
    """The JSON document in a request body, or Graph's RequestBodyRead error.

    JSON may spell lone UTF-16 surrogates ("\\ud800"); like .NET, Graph keeps such strings, and
    the emulator turns each into U+FFFD so that every string can be encoded.
    """
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SchemaError(BODY_READ, f"Invalid JSON. {exc}") from None
    return _without_surrogates(document)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


def parse_send_mail(document: Any) -> SendMailRequest:
    """Validate a `sendMail` JSON body; the message must also satisfy `check_message_rules`."""
    params = _parameters(
        document,
        "sendMail",
        {"message": ("Message", NS + "message"), "savetosentitems": ("SaveToSentItems", None)},
    )
    if params.get("Message") is None:
        raise SchemaError(
            BODY_READ, "The parameter 'Message' in the request payload is missing or null."
        )
    save = params.get("SaveToSentItems")
    if save is not None:
        validate(save, "Edm.Boolean", name="SaveToSentItems")
    message: dict[str, Any] = params["Message"]
    check_message_rules(message)
    return SendMailRequest(message=message, save_to_sent_items=as_bool(save, default=True))


def parse_message(document: Any) -> dict[str, Any]:
    """Validate the JSON body of `POST /users/{id}/messages` (a draft)."""
    validate(document, NS + "message", name="message")
    check_message_rules(document)
    result: dict[str, Any] = document
    return result


def parse_attachment(document: Any) -> dict[str, Any]:
    """Validate the JSON body of `POST …/messages/{id}/attachments`."""
    validate(document, NS + "attachment", name="attachment")
    result: dict[str, Any] = document
    return result


def parse_upload_session(document: Any) -> dict[str, Any]:
    """Validate a `createUploadSession` body and return its AttachmentItem."""
    params = _parameters(
        document,
        "createUploadSession",
        {"attachmentitem": ("AttachmentItem", NS + "attachmentItem")},
    )
    item = params.get("AttachmentItem")
    if not isinstance(item, dict):
        raise SchemaError(
            BODY_READ, "The parameter 'AttachmentItem' in the request payload is missing or null."
        )
    return item


def _parameters(
    document: Any, operation: str, spec: Mapping[str, tuple[str, str | None]]
) -> dict[str, Any]:
    """Match action parameters case-insensitively; validate the typed ones."""
    if not isinstance(document, dict):
        raise SchemaError(
            BODY_READ,
            "An unexpected node was found when reading the request payload of the operation "
            f"'{operation}'. A 'StartObject' node was expected.",
        )
    params: dict[str, Any] = {}
    for key, value in document.items():
        entry = spec.get(key.lower())
        if entry is None:
            raise SchemaError(
                BODY_READ,
                f"The parameter '{key}' in the request payload is not a valid parameter for the "
                f"operation '{operation}'.",
            )
        canonical, type_name = entry
        if canonical in params:
            raise SchemaError(
                BODY_READ,
                f"Multiple parameters with the name '{canonical}' were found in the request body.",
            )
        if type_name is not None and value is not None:
            validate(value, type_name, name=canonical)
        params[canonical] = value
    return params


def check_message_rules(message: Mapping[str, Any]) -> None:
    """Graph's rules for `internetMessageHeaders`, checked when a message is submitted."""
    headers = message.get("internetMessageHeaders")
    if headers is None:
        return
    if not headers:
        raise SchemaError(
            "InvalidInternetMessageHeaderCollection",
            "The internet message header collection must not be empty when it is specified.",
        )
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise SchemaError(
            "InvalidInternetMessageHeaderCollection",
            "Maximum number of headers in one message should be less than or equal to "
            f"{MAX_CUSTOM_HEADERS}.",
        )
    for header in headers:
        name = header.get("name") or ""
        if not name.lower().startswith("x-"):
            raise SchemaError(
                "InvalidInternetMessageHeader",
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
            )


RECIPIENT_FIELDS = (("to", "toRecipients"), ("cc", "ccRecipients"), ("bcc", "bccRecipients"))
NO_RECIPIENTS = "At least one recipient is not valid., A message can't be sent because it contains no recipients."  # noqa: E501 - Graph's message, quoted exactly
_ADDRESS = re.compile(
    r"^[^\s@<>()\[\]\\,;:\"]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,}$"
)


def json_recipients(message: Mapping[str, Any]) -> dict[str, list[str]]:
    """Addresses of toRecipients/ccRecipients/bccRecipients, as given."""
    result: dict[str, list[str]] = {}
    for key, field_name in RECIPIENT_FIELDS:
        addresses = []
        for recipient in message.get(field_name) or []:
            email = recipient.get("emailAddress") or {}
            addresses.append(email.get("address") or "")
        result[key] = addresses
    return result


def check_recipients(recipients: Mapping[str, list[str]]) -> None:
    """At least one recipient, and every one a resolvable address (`ErrorInvalidRecipients`)."""
    everyone = [address for addresses in recipients.values() for address in addresses]
    if not everyone:
        raise SchemaError("ErrorInvalidRecipients", NO_RECIPIENTS)
    for address in everyone:
        if not _ADDRESS.match(address):
            raise SchemaError(
                "ErrorInvalidRecipients",
                f"At least one recipient is not valid., Recipient '{address}' is not resolved. "
                "All recipients must be resolved before a message can be submitted.",
            )
