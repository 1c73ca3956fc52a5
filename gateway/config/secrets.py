"""A value that must never be printed: client secrets, password hashes, key passwords.

`Secret` hides its content in `repr`/`str`, so a config object can be logged or shown in an
error without leaking anything. Code that needs the value calls `reveal()`, on purpose.
"""

from __future__ import annotations


class Secret:
    """A string that does not show itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Call only where it is sent to the service that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)
