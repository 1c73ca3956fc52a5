"""A small JSON Schema (2020-12) validator for the keywords the reference Graph schema uses.

`jsonschema` is not a dependency, and the cross-check needs only: $ref (local), allOf, anyOf,
oneOf, const, enum, type, pattern, minimum, maximum, items, properties, required,
additionalProperties and unevaluatedProperties. Annotations (title, format, $comment, x-…) are
ignored. `evaluate` returns the property names a subschema evaluated (for
unevaluatedProperties), or None when the instance is invalid.
"""

from __future__ import annotations

import re
from typing import Any

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _same(a: Any, b: Any) -> bool:
    """JSON equality (True is not 1)."""
    return type(a) is type(b) and a == b


class Validator:
    def __init__(self, root: dict[str, Any], ref: str) -> None:
        self.root = root
        self.schema = {"$ref": ref}

    def is_valid(self, instance: Any) -> bool:
        return self.evaluate(instance, self.schema) is not None

    def _resolve(self, ref: str) -> Any:
        assert ref.startswith("#/"), ref
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def evaluate(self, instance: Any, schema: Any) -> set[str] | None:  # noqa: PLR0912 - one branch per keyword
        if schema is True:
            return set()
        if schema is False:
            return None
        seen: set[str] = set()
        if "$ref" in schema:
            found = self.evaluate(instance, self._resolve(schema["$ref"]))
            if found is None:
                return None
            seen |= found
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_TYPES[t](instance) for t in types):
                return None
        if "const" in schema and not _same(instance, schema["const"]):
            return None
        if "enum" in schema and not any(_same(instance, e) for e in schema["enum"]):
            return None
        if isinstance(instance, str) and not re.search(schema.get("pattern", ""), instance):
            return None
        if _TYPES["number"](instance):
            if "minimum" in schema and instance < schema["minimum"]:
                return None
            if "maximum" in schema and instance > schema["maximum"]:
                return None
        items = schema.get("items", True)
        if isinstance(instance, list) and any(self.evaluate(i, items) is None for i in instance):
            return None
        if isinstance(instance, dict):
            if any(name not in instance for name in schema.get("required", [])):
                return None
            properties = schema.get("properties", {})
            for name, value in instance.items():
                if name in properties:
                    if self.evaluate(value, properties[name]) is None:
                        return None
                    seen.add(name)
                elif "additionalProperties" in schema:
                    if self.evaluate(value, schema["additionalProperties"]) is None:
                        return None
                    seen.add(name)
        for sub in schema.get("allOf", []):
            found = self.evaluate(instance, sub)
            if found is None:
                return None
            seen |= found
        if "anyOf" in schema:
            results = [self.evaluate(instance, sub) for sub in schema["anyOf"]]
            valid = [r for r in results if r is not None]
            if not valid:
                return None
            for found in valid:
                seen |= found
        if "oneOf" in schema:
            results = [self.evaluate(instance, sub) for sub in schema["oneOf"]]
            valid = [r for r in results if r is not None]
            if len(valid) != 1:
                return None
            seen |= valid[0]
        if isinstance(instance, dict) and "unevaluatedProperties" in schema:
            for name, value in instance.items():
                if name not in seen:
                    if self.evaluate(value, schema["unevaluatedProperties"]) is None:
                        return None
                    seen.add(name)
        return seen
