"""The OpenAPI 3.1 document of the console's JSON API (served at `/api/openapi.json`)."""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.console.filters import MAX_PAGE_SIZE
from gateway.console.service import MAX_BULK, OPERATIONS
from gateway.queue.model import STATE_WORDS

_ERROR = {
    "description": "what is wrong",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {"error": {"type": "string"}},
            }
        }
    },
}
_ATTEMPT: dict[str, Any] = {
    "type": "object",
    "description": "one delivery attempt",
    "properties": {
        "at": {"type": "number", "description": "seconds since the epoch"},
        "result": {"type": "string", "enum": ["deferred", "held", "delivered"]},
        "status": {"type": ["integer", "null"], "description": "Graph's HTTP status"},
        "code": {"type": ["string", "null"], "description": "Graph's error.code"},
        "request_id": {"type": ["string", "null"]},
        "duration_ms": {"type": ["integer", "null"]},
        "reason": {"type": "string"},
    },
}
_ROW: dict[str, Any] = {
    "type": "object",
    "required": ["queue_id", "state", "mail_from", "rcpt_tos", "size", "age", "tenant"],
    "properties": {
        "queue_id": {"type": "string"},
        "state": {"type": "string", "enum": list(STATE_WORDS.values())},
        "size": {"type": "integer"},
        "received_at": {"type": "number"},
        "mail_from": {"type": "string"},
        "rcpt_tos": {"type": "array", "items": {"type": "string"}},
        "next_attempt": {"type": ["number", "null"]},
        "attempts": {"type": "integer"},
        "reason": {"type": "string"},
        "peer": {"type": "string", "description": "the client address that sent it"},
        "user": {"type": "string", "description": "its SMTP AUTH user"},
        "age": {"type": "number", "description": "seconds since it arrived"},
        "tenant": {"type": "string", "description": "the tenant that routes the sender"},
    },
}

_DEVICE: dict[str, Any] = {
    "type": "object",
    "required": ["address", "user", "client", "last_seen", "today", "week", "silent"],
    "properties": {
        "address": {"type": "string"},
        "user": {"type": "string", "description": 'the SMTP AUTH user ("" for none)'},
        "client": {"type": "string", "description": "the client rule that matched"},
        "first_seen": {"type": "number"},
        "last_seen": {"type": "number"},
        "last_accepted": {"type": "number"},
        "today": {"type": "integer", "description": "messages accepted today (UTC)"},
        "week": {"type": "integer", "description": "messages accepted in the last 7 days"},
        "silent": {"type": "boolean"},
        "last_refusal": {"type": ["object", "null"]},
        "last_failure": {"type": ["object", "null"]},
    },
}


# A change made with a session cookie carries the session's CSRF token (bearer tokens need none).
_CSRF = {
    "name": "X-CSRF-Token",
    "in": "header",
    "required": False,
    "description": "required with a session cookie",
    "schema": {"type": "string"},
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body of `schema`."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


_QUEUE_ID = {
    "name": "queue_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9A-F]{19}$"},
}
_DURATION = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[smhd]?$"}


def document() -> dict[str, Any]:
    """The whole document."""
    signed_in = {"401": _ERROR}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smtp-graph-gateway console API",
            "version": __version__,
            "description": "The operator console's data and queue actions. Sign in with a "
            "session (changes then need the X-CSRF-Token header, from /api/v1/whoami) or a "
            "bearer token from console.api_tokens.",
        },
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sgg-session"},
            },
            "schemas": {"Attempt": _ATTEMPT, "Listed": _ROW, "Device": _DEVICE},
        },
        "paths": {
            "/api/v1/whoami": {
                "get": {
                    "summary": "who is signed in, the role, and a session's CSRF token",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["name", "role"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "role": {"type": "string", "enum": ["viewer", "operator"]},
                                    "csrf_token": {"type": "string"},
                                },
                            }
                        ),
                        **signed_in,
                    },
                }
            },
            "/api/v1/overview": {
                "get": {
                    "summary": "ready or not and why, queue counts, tenants' health",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["ready", "checks", "problems", "queue", "tenants"],
                                "properties": {
                                    "ready": {"type": "boolean"},
                                    "checks": {
                                        "type": "object",
                                        "additionalProperties": {"type": "boolean"},
                                    },
                                    "problems": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "queue": {"type": "object"},
                                    "tenants": {"type": "array", "items": {"type": "object"}},
                                    "silent_devices": {"type": "integer"},
                                    "activity": {
                                        "type": "object",
                                        "description": "delivered, deferred and held attempts "
                                        "per minute for the last hour and per hour for the "
                                        "last day, oldest first (since the gateway started)",
                                    },
                                },
                            }
                        ),
                        **signed_in,
                    },
                }
            },
            "/api/v1/devices": {
                "get": {
                    "summary": "every sending address and AUTH user: last seen, messages "
                    "today and in 7 days, last refusal, last delivery failure, silent or not",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["devices", "silent"],
                                "properties": {
                                    "silent": {"type": "integer"},
                                    "devices": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Device"},
                                    },
                                },
                            }
                        ),
                        **signed_in,
                    },
                }
            },
            "/api/v1/messages": {
                "get": {
                    "summary": "the queue, filtered and paged (newest first)",
                    "parameters": [
                        _query(
                            "state",
                            "queued, sending, held or corrupt",
                            {"type": "string", "enum": ["", "any", *STATE_WORDS.values()]},
                        ),
                        _query("sender", "part of the envelope sender", {"type": "string"}),
                        _query("recipient", "part of a recipient", {"type": "string"}),
                        _query("tenant", "the tenant's name", {"type": "string"}),
                        _query("device", "the client address or AUTH user", {"type": "string"}),
                        _query("older_than", "e.g. 30m, 2h, 1d", _DURATION),
                        _query("newer_than", "e.g. 30m, 2h, 1d", _DURATION),
                        _query("page", "from 1", {"type": "integer", "minimum": 1}),
                        _query(
                            "per_page",
                            "messages per page",
                            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                        ),
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["total", "page", "per_page", "messages"],
                                "properties": {
                                    "total": {"type": "integer"},
                                    "page": {"type": "integer"},
                                    "per_page": {"type": "integer"},
                                    "messages": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Listed"},
                                    },
                                },
                            }
                        ),
                        "400": _ERROR,
                        **signed_in,
                    },
                }
            },
            "/api/v1/messages/{queue_id}": {
                "get": {
                    "summary": "one message: envelope, headers, attachments, attempts, hold "
                    "reason (never the body)",
                    "parameters": [_QUEUE_ID],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["queue_id", "state", "attempts"],
                                "properties": {
                                    "queue_id": {"type": "string"},
                                    "state": {"type": "string"},
                                    "envelope": {"type": ["object", "null"]},
                                    "attempts": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Attempt"},
                                    },
                                    "hold": {"type": ["object", "null"]},
                                    "summary": {"type": ["object", "null"]},
                                },
                            }
                        ),
                        "404": _ERROR,
                        **signed_in,
                    },
                }
            },
            "/api/v1/messages/{queue_id}/raw": {
                "get": {
                    "summary": "the message as received (operators only; logged)",
                    "parameters": [_QUEUE_ID],
                    "responses": {
                        "200": {
                            "description": "the raw message",
                            "content": {"message/rfc822": {"schema": {"type": "string"}}},
                        },
                        "403": _ERROR,
                        "404": _ERROR,
                        **signed_in,
                    },
                }
            },
            "/api/v1/test-message": {
                "post": {
                    "summary": "queue a test message from a sender mailbox (operators only); "
                    "watch it with /api/v1/messages/{queue_id}",
                    "parameters": [_CSRF],
                    "requestBody": _json_body(
                        {
                            "type": "object",
                            "required": ["sender", "recipient"],
                            "properties": {
                                "sender": {"type": "string"},
                                "recipient": {"type": "string"},
                            },
                        }
                    ),
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["queue_id"],
                                "properties": {"queue_id": {"type": "string"}},
                            }
                        ),
                        "400": _ERROR,
                        "403": _ERROR,
                        "503": _ERROR,
                        **signed_in,
                    },
                }
            },
            "/api/v1/actions": {
                "post": {
                    "summary": "retry, hold, release or delete messages (operators only), "
                    "the same operations as `smtp-graph-gateway queue`",
                    "parameters": [_CSRF],
                    "requestBody": _json_body(
                        {
                            "type": "object",
                            "required": ["operation", "ids"],
                            "properties": {
                                "operation": {"type": "string", "enum": list(OPERATIONS)},
                                "ids": {
                                    "type": "array",
                                    "minItems": 1,
                                    "maxItems": MAX_BULK,
                                    "items": {"type": "string"},
                                },
                            },
                        }
                    ),
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["operation", "done", "refused"],
                                "properties": {
                                    "operation": {"type": "string"},
                                    "done": {"type": "array", "items": {"type": "string"}},
                                    "refused": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            }
                        ),
                        "400": _ERROR,
                        "403": _ERROR,
                        **signed_in,
                    },
                }
            },
        },
    }
