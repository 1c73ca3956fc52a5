"""Our own schema of Graph's mail types (message, recipient, attachments …) and its validator.

Written by hand from the Graph v1.0 reference pages (message, recipient, emailAddress, itemBody,
internetMessageHeader, followupFlag, fileAttachment, itemAttachment, attachmentItem) in the
notation of the service's CSDL: a property maps to `Edm.String`, an enum, a structured type or
`Collection(T)`. The validator reads a JSON value the way Graph's OData reader does and stops at
the first problem with the same error code (`RequestBodyRead`) and similar wording, e.g. "The
property 'toRecipient' does not exist on type 'microsoft.graph.message'. …".

Deliberate choices, where Graph is lenient or unclear:
- undeclared properties are rejected, even though `message` is an open type in the metadata
  (a typo such as `toRecipient` would otherwise silently drop recipients);
- property names are case-sensitive; enum values are case-insensitive (Graph's own examples
  send "Text" and "HTML"); booleans also accept the strings "true"/"false" (a docs example
  sends `"saveToSentItems": "false"` and Graph takes it);
- `Edm.Binary` must be standard, padded base64 (what Graph's reader decodes).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

BODY_READ = "RequestBodyRead"
NS = "microsoft.graph."


class SchemaError(Exception):
    """A request body Graph would refuse with HTTP 400 and this `error.code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class StructuredType:
    name: str
    properties: Mapping[str, str] = field(default_factory=dict)
    non_nullable: frozenset[str] = frozenset()
    base: str | None = None
    abstract: bool = False
    open: bool = False  # undeclared properties allowed (open extensions, non-mail items)


ENUMS: Mapping[str, tuple[str, ...]] = {
    NS + "bodyType": ("text", "html"),
    NS + "importance": ("low", "normal", "high"),
    NS + "inferenceClassificationType": ("focused", "other"),
    NS + "followupFlagStatus": ("notFlagged", "complete", "flagged"),
    NS + "attachmentType": ("file", "item", "reference"),
}

_RECIPIENTS = f"Collection({NS}recipient)"

TYPES: Mapping[str, StructuredType] = {
    t.name: t
    for t in (
        StructuredType(NS + "entity", {"id": "Edm.String"}, abstract=True),
        StructuredType(
            NS + "outlookItem",
            {
                "categories": "Collection(Edm.String)",
                "changeKey": "Edm.String",
                "createdDateTime": "Edm.DateTimeOffset",
                "lastModifiedDateTime": "Edm.DateTimeOffset",
            },
            base=NS + "entity",
            abstract=True,
        ),
        StructuredType(
            NS + "message",
            {
                "bccRecipients": _RECIPIENTS,
                "body": NS + "itemBody",
                "bodyPreview": "Edm.String",
                "ccRecipients": _RECIPIENTS,
                "conversationId": "Edm.String",
                "conversationIndex": "Edm.Binary",
                "flag": NS + "followupFlag",
                "from": NS + "recipient",
                "hasAttachments": "Edm.Boolean",
                "importance": NS + "importance",
                "inferenceClassification": NS + "inferenceClassificationType",
                "internetMessageHeaders": f"Collection({NS}internetMessageHeader)",
                "internetMessageId": "Edm.String",
                "isDeliveryReceiptRequested": "Edm.Boolean",
                "isDraft": "Edm.Boolean",
                "isRead": "Edm.Boolean",
                "isReadReceiptRequested": "Edm.Boolean",
                "parentFolderId": "Edm.String",
                "receivedDateTime": "Edm.DateTimeOffset",
                "replyTo": _RECIPIENTS,
                "sender": NS + "recipient",
                "sentDateTime": "Edm.DateTimeOffset",
                "subject": "Edm.String",
                "toRecipients": _RECIPIENTS,
                "uniqueBody": NS + "itemBody",
                "webLink": "Edm.String",
                "attachments": f"Collection({NS}attachment)",
                "extensions": f"Collection({NS}extension)",
                "singleValueExtendedProperties": (
                    f"Collection({NS}singleValueLegacyExtendedProperty)"
                ),
                "multiValueExtendedProperties": f"Collection({NS}multiValueLegacyExtendedProperty)",
            },
            base=NS + "outlookItem",
        ),
        # Items other than messages can be attached; the emulator takes them as they come.
        StructuredType(NS + "event", base=NS + "outlookItem", open=True),
        StructuredType(NS + "contact", base=NS + "outlookItem", open=True),
        StructuredType(NS + "extension", base=NS + "entity", abstract=True),
        StructuredType(
            NS + "openTypeExtension",
            {"extensionName": "Edm.String"},
            base=NS + "extension",
            open=True,
        ),
        StructuredType(NS + "recipient", {"emailAddress": NS + "emailAddress"}),
        StructuredType(NS + "emailAddress", {"address": "Edm.String", "name": "Edm.String"}),
        StructuredType(NS + "itemBody", {"content": "Edm.String", "contentType": NS + "bodyType"}),
        StructuredType(NS + "internetMessageHeader", {"name": "Edm.String", "value": "Edm.String"}),
        StructuredType(
            NS + "followupFlag",
            {
                "completedDateTime": NS + "dateTimeTimeZone",
                "dueDateTime": NS + "dateTimeTimeZone",
                "startDateTime": NS + "dateTimeTimeZone",
                "flagStatus": NS + "followupFlagStatus",
            },
        ),
        StructuredType(
            NS + "dateTimeTimeZone",
            {"dateTime": "Edm.String", "timeZone": "Edm.String"},
            non_nullable=frozenset({"dateTime"}),
        ),
        StructuredType(
            NS + "singleValueLegacyExtendedProperty",
            {"value": "Edm.String"},
            base=NS + "entity",
        ),
        StructuredType(
            NS + "multiValueLegacyExtendedProperty",
            {"value": "Collection(Edm.String)"},
            base=NS + "entity",
        ),
        StructuredType(
            NS + "attachment",
            {
                "contentType": "Edm.String",
                "isInline": "Edm.Boolean",
                "lastModifiedDateTime": "Edm.DateTimeOffset",
                "name": "Edm.String",
                "size": "Edm.Int32",
            },
            non_nullable=frozenset({"isInline", "size"}),
            base=NS + "entity",
            abstract=True,
        ),
        StructuredType(
            NS + "fileAttachment",
            {
                "contentBytes": "Edm.Binary",
                "contentId": "Edm.String",
                "contentLocation": "Edm.String",
            },
            base=NS + "attachment",
        ),
        StructuredType(NS + "itemAttachment", {"item": NS + "outlookItem"}, base=NS + "attachment"),
        StructuredType(NS + "referenceAttachment", base=NS + "attachment"),
        StructuredType(
            NS + "attachmentItem",
            {
                "attachmentType": NS + "attachmentType",
                "contentId": "Edm.String",
                "contentType": "Edm.String",
                "isInline": "Edm.Boolean",
                "name": "Edm.String",
                "size": "Edm.Int64",
            },
        ),
    )
}

_INT_RANGES = {"Edm.Int32": (-(2**31), 2**31 - 1), "Edm.Int64": (-(2**63), 2**63 - 1)}
_BASE64 = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
_WHITESPACE = re.compile(r"[ \t\r\n]")


def properties_of(type_name: str) -> dict[str, str]:
    """All properties of a structured type, inherited ones included."""
    chain: list[StructuredType] = []
    current: str | None = type_name
    while current is not None:
        chain.append(TYPES[current])
        current = TYPES[current].base
    merged: dict[str, str] = {}
    for structured in reversed(chain):
        merged.update(structured.properties)
    return merged


def non_nullable_of(type_name: str) -> frozenset[str]:
    result: frozenset[str] = frozenset()
    current: str | None = type_name
    while current is not None:
        result |= TYPES[current].non_nullable
        current = TYPES[current].base
    return result


def is_derived(type_name: str, base: str) -> bool:
    current: str | None = type_name
    while current is not None:
        if current == base:
            return True
        current = TYPES[current].base
    return False


def decode_binary(value: str) -> bytes:
    """Decode `Edm.Binary` text as Graph does (standard alphabet, padding, whitespace ignored)."""
    compact = _WHITESPACE.sub("", value)
    if not _BASE64.match(compact):
        raise ValueError("not standard base64")
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise ValueError("not standard base64") from exc


def validate(value: Any, type_name: str, *, name: str = "") -> None:
    """Raise SchemaError if `value` is not a valid JSON instance of `type_name`."""
    if type_name.startswith("Collection("):
        _validate_collection(value, type_name, name)
    elif type_name in TYPES:
        _validate_structured(value, type_name, name)
    elif type_name in ENUMS:
        _validate_enum(value, type_name, name)
    else:
        _validate_primitive(value, type_name, name)


def _validate_collection(value: Any, type_name: str, name: str) -> None:
    item_type = type_name[len("Collection(") : -1]
    if not isinstance(value, list):
        raise SchemaError(
            BODY_READ,
            f"A node of type '{_node(value)}' was read from the JSON reader when trying to read "
            f"the contents of the property '{name}'; however, a 'StartArray' node was expected.",
        )
    for item in value:
        if item is None:
            raise _null_error(name, item_type)
        validate(item, item_type, name=name)


def _validate_structured(value: Any, type_name: str, name: str) -> None:
    if not isinstance(value, dict):
        raise SchemaError(
            BODY_READ,
            f"A node of type '{_node(value)}' was read from the JSON reader when trying to read "
            f"the contents of the property '{name}'; however, a 'StartObject' node was expected.",
        )
    actual = _resolve_type(value, type_name)
    properties = properties_of(actual)
    required = non_nullable_of(actual)
    for key, item in value.items():
        if key == "@odata.type" or ("@" in key and not key.startswith("@")):
            continue  # the type annotation, or a property annotation such as "x@odata.etag"
        if key.startswith("@"):
            raise SchemaError(
                BODY_READ,
                f"The annotation '{key[1:]}' was found. This annotation is either not recognized "
                "or not expected at the current position.",
            )
        if key not in properties:
            if TYPES[actual].open:
                continue
            raise SchemaError(
                BODY_READ,
                f"The property '{key}' does not exist on type '{actual}'. Make sure to only use "
                "property names that are defined by the type or mark the type as open type.",
            )
        if item is None:
            if key in required or properties[key].startswith("Collection("):
                raise _null_error(key, properties[key])
            continue
        validate(item, properties[key], name=key)


def _resolve_type(value: Mapping[str, Any], expected: str) -> str:
    """The concrete type named by `@odata.type` (or the expected one), checked against it."""
    annotation = value.get("@odata.type")
    actual = expected
    if annotation is not None:
        if not isinstance(annotation, str):
            raise SchemaError(
                BODY_READ, "The value of the 'odata.type' annotation must be a string."
            )
        actual = annotation.removeprefix("#")
        if actual not in TYPES:
            raise SchemaError(
                BODY_READ,
                f"A type named '{actual}' could not be resolved by the model. When a model is "
                "available, each type name must resolve to a valid type.",
            )
        if not is_derived(actual, expected):
            raise SchemaError(
                BODY_READ,
                f"A resource with type '{actual}' was found, but it is not assignable to the "
                f"expected type '{expected}'. The type specified in the resource must be equal to "
                "either the expected type or a derived type.",
            )
    if TYPES[actual].abstract:
        raise SchemaError(
            BODY_READ,
            f"An instance of abstract resource type '{actual}' was found. Abstract resource types "
            "cannot be instantiated.",
        )
    return actual


def _validate_enum(value: Any, type_name: str, name: str) -> None:
    if isinstance(value, str) and value.lower() in {m.lower() for m in ENUMS[type_name]}:
        return
    _primitive_shape(value, name)
    raise _literal_error(value, type_name)


def _validate_primitive(value: Any, type_name: str, name: str) -> None:
    _primitive_shape(value, name)
    if type_name == "Edm.String":
        if not isinstance(value, str):
            raise SchemaError(
                BODY_READ,
                "Cannot convert a primitive value to the expected type 'Edm.String'. See the "
                "inner exception for more details.",
            )
    elif type_name == "Edm.Boolean":
        if not (isinstance(value, bool) or (isinstance(value, str) and value.lower() in _BOOLS)):
            raise _literal_error(value, type_name)
    elif type_name in _INT_RANGES:
        low, high = _INT_RANGES[type_name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _literal_error(value, type_name)
    elif type_name == "Edm.DateTimeOffset":
        if not isinstance(value, str) or not _is_datetime_offset(value):
            raise _literal_error(value, type_name)
    elif type_name == "Edm.Binary":
        try:
            decode_binary(value if isinstance(value, str) else "!")
        except ValueError:
            raise _literal_error(value, type_name) from None
    else:  # pragma: no cover - a typo in TYPES
        raise AssertionError(f"unknown type {type_name}")


_BOOLS = frozenset({"true", "false"})


def as_bool(value: Any, default: bool) -> bool:
    """A validated Edm.Boolean (possibly the string form) as a Python bool."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _primitive_shape(value: Any, name: str) -> None:
    if isinstance(value, dict | list):
        raise SchemaError(
            BODY_READ,
            f"An unexpected '{_node(value)}' node was found for property named '{name}' when "
            "reading from the JSON reader. A 'PrimitiveValue' node was expected.",
        )


def _is_datetime_offset(text: str) -> bool:
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return "T" in text and parsed.tzinfo is not None


def _literal_error(value: Any, type_name: str) -> SchemaError:
    shown = str(value)
    if len(shown) > 40:
        shown = shown[:40] + "…"
    return SchemaError(
        BODY_READ, f"Cannot convert the literal '{shown}' to the expected type '{type_name}'."
    )


def _null_error(name: str, type_name: str) -> SchemaError:
    expected = f"{type_name}[Nullable=False]"
    return SchemaError(
        BODY_READ,
        f"A null value was found for the property named '{name}', which has the expected type "
        f"'{expected}'. The expected type '{expected}' does not allow null values.",
    )


def _node(value: Any) -> str:
    if isinstance(value, dict):
        return "StartObject"
    if isinstance(value, list):
        return "StartArray"
    return "PrimitiveValue"
