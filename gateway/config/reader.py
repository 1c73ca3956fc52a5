"""A small typed reader over parsed YAML that collects every problem instead of stopping.

Each getter takes a mapping, a key and the YAML path of the mapping, returns the typed value
(or a fallback), and records a `ConfigIssue` with the full path and a hint when the value is
wrong. `loader.py` reads the whole document with it and raises one `ConfigError` at the end.
Things that load but are probably not what was meant are collected as warnings the same way.
Secret values are never quoted in an issue.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.addresses import parse_mailbox
from gateway.config.secrets import Secret
from gateway.config.units import parse_duration, parse_size
from gateway.errors import ConfigIssue

T = TypeVar("T")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    int: "a number",
    bool: "true/false",
}
# The words YAML 1.1 (PyYAML) reads as booleans when they are not quoted.
_BOOLEAN_WORDS = {True: ("on", "yes", "true"), False: ("off", "no", "false")}
_QUOTE_HINT = "YAML reads unquoted yes/no/on/off/true/false as true or false: quote the value"


def join(path: str, key: str | int) -> str:
    """The YAML path of `key` inside `path`: `tenants[1].client_id`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return _TYPE_NAMES.get(type(value), type(value).__name__) if value is not None else "nothing"


class Reader:
    """Collects issues while reading values out of a YAML tree."""

    def __init__(self, *, env: Mapping[str, str], base_dir: Path) -> None:
        self.env = env
        self.base_dir = base_dir
        self.issues: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []

    def issue(self, path: str, message: str, hint: str = "") -> None:
        """Record one problem."""
        self.issues.append(ConfigIssue(path, message, hint))

    def warn(self, path: str, message: str, hint: str = "") -> None:
        """Record something that loads but is probably not what was meant."""
        self.warnings.append(ConfigIssue(path, message, hint))

    def mapping(self, value: object, path: str, allowed: Sequence[str]) -> dict[str, Any] | None:
        """`value` as a mapping with only `allowed` keys (unknown keys are reported)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.issue(path or "(top level)", f"expected a mapping, got {_describe(value)}")
            return None
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(allowed)
                self.issue(join(path, str(key)), "unknown key", hint)
        return value

    def items(self, value: object, path: str) -> list[tuple[str, object]]:
        """(path, item) pairs of a YAML list; a missing list is empty."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.issue(path, f"expected a list, got {_describe(value)}")
            return []
        return [(join(path, index), item) for index, item in enumerate(value)]

    def _expand(self, text: str, path: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.env:
                self.issue(path, f"environment variable {name} is not set", "set it or remove ${…}")
                return ""
            return self.env[name]

        return _ENV_REF.sub(substitute, text)

    def string(
        self, node: Mapping[str, Any], key: str, path: str, default: str | None = None
    ) -> str | None:
        """A string (with `${ENV}` references expanded); numbers are taken as their text."""
        value = node.get(key)
        where = join(path, key)
        if value is None:
            return default
        if isinstance(value, bool):
            self.issue(where, f"expected a string, got {_describe(value)}", _QUOTE_HINT)
            return default
        if not isinstance(value, str | int | float):
            self.issue(where, f"expected a string, got {_describe(value)}")
            return default
        return self._expand(str(value), where)

    def required_string(self, node: Mapping[str, Any], key: str, path: str, hint: str) -> str:
        """A string that must be present and non-empty."""
        value = self.string(node, key, path)
        if not value:
            self.issue(join(path, key), "is required", hint)
            return ""
        return value

    def optional_boolean(self, node: Mapping[str, Any], key: str, path: str) -> bool | None:
        """true, false, or None when the key is not given."""
        if node.get(key) is None:
            return None
        return self.boolean(node, key, path, True)

    def boolean(self, node: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        """true or false."""
        value = node.get(key, default)
        if not isinstance(value, bool):
            self.issue(join(path, key), f"expected true or false, got {_describe(value)}")
            return default
        return value

    def integer(
        self,
        node: Mapping[str, Any],
        key: str,
        path: str,
        default: int,
        *,
        minimum: int = 0,
        maximum: int | None = None,
    ) -> int:
        """A whole number within bounds."""
        value = node.get(key, default)
        where = join(path, key)
        if isinstance(value, bool) or not isinstance(value, int):
            self.issue(where, f"expected a whole number, got {_describe(value)}")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and {maximum}" if maximum is not None else ""
            bound = f"between {minimum}{upper}" if maximum is not None else f"at least {minimum}"
            self.issue(where, f"must be {bound}, got {value}")
            return default
        return value

    def size(
        self, node: Mapping[str, Any], key: str, path: str, default: int, *, minimum: int = 0
    ) -> int:
        """A byte count written as `35MiB`, `10MB` or a plain number."""
        value = node.get(key)
        where = join(path, key)
        if value is None:
            return default
        try:
            parsed = parse_size(value)
        except ValueError as error:
            self.issue(where, str(error))
            return default
        if parsed < minimum:
            self.issue(where, f"must be at least {minimum} bytes, got {parsed}")
            return default
        return parsed

    def duration(
        self,
        node: Mapping[str, Any],
        key: str,
        path: str,
        default: float,
        *,
        minimum: float = 0.0,
    ) -> float:
        """Seconds written as `30s`, `5m`, `1h` or a plain number of seconds."""
        value = node.get(key)
        where = join(path, key)
        if value is None:
            return default
        try:
            parsed = parse_duration(value)
        except ValueError as error:
            self.issue(where, str(error))
            return default
        if parsed < minimum:
            self.issue(where, f"must be at least {minimum:g}s, got {parsed:g}s")
            return default
        return parsed

    def choice(
        self, node: Mapping[str, Any], key: str, path: str, choices: Sequence[str], default: str
    ) -> str:
        """One of a fixed set of words (case-insensitive).

        YAML reads an unquoted `off`, `no`, `on`, `yes` as a boolean: when exactly one of the
        choices is such a word for that boolean (`auth: off`), it is taken as written.
        """
        raw = node.get(key)
        if isinstance(raw, bool):
            words = [word for word in _BOOLEAN_WORDS[raw] if word in choices]
            if len(words) == 1:
                return words[0]
            self.issue(
                join(path, key),
                f"unknown value {_describe(raw)} (YAML reads unquoted "
                f"{'/'.join(_BOOLEAN_WORDS[raw])} as {_describe(raw)})",
                "use one of " + ", ".join(choices) + ", in quotes if it is one of those words",
            )
            return default
        value = self.string(node, key, path)
        if value is None:
            return default
        if value.lower() not in choices:
            self.issue(
                join(path, key), f"unknown value {value!r}", "use one of " + ", ".join(choices)
            )
            return default
        return value.lower()

    def string_list(self, node: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
        """A list of strings; a single string is taken as a list of one."""
        value = node.get(key)
        if isinstance(value, str):
            value = [value]
        result: list[str] = []
        for where, item in self.items(value, join(path, key)):
            if not isinstance(item, str) or not item.strip():
                hint = _QUOTE_HINT if isinstance(item, bool) else ""
                self.issue(where, f"expected a non-empty string, got {_describe(item)}", hint)
                continue
            result.append(self._expand(item.strip(), where))
        return tuple(result)

    def networks(
        self, node: Mapping[str, Any], key: str, path: str
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """CIDR networks (`192.168.10.0/24`, `2001:db8::/32`) or single addresses.

        A network with host bits set (`10.1.2.3/8`) is refused, not widened: it may mean the
        one host or the whole network, and guessing wrong lets a whole network send.
        """
        result: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for index, text in enumerate(self.string_list(node, key, path)):
            where = join(join(path, key), index)
            try:
                result.append(ipaddress.ip_network(text))
                continue
            except ValueError:
                pass
            try:
                widened = ipaddress.ip_network(text, strict=False)
            except ValueError:
                self.issue(
                    where,
                    f"not an IP network: {text!r}",
                    "use CIDR notation such as 192.168.10.0/24 or fd00::/8",
                )
                continue
            host = text.split("/", 1)[0].strip()
            single = f"{host}/{widened.max_prefixlen}"
            self.issue(
                where,
                f"{text!r} has host bits set: it would mean all of {widened}",
                f"write {single} for the one address, or {widened} for the whole network",
            )
        return tuple(result)

    def resolve_path(self, text: str) -> Path:
        """A path from the config: absolute, or relative to the config file's folder. `~user`
        for a user this machine does not have is left as written (the file is then missing)."""
        try:
            path = Path(text).expanduser()
        except RuntimeError:
            path = Path(text)
        return path if path.is_absolute() else self.base_dir / path

    def existing_file(self, node: Mapping[str, Any], key: str, path: str) -> Path | None:
        """A path to a file that must exist and be readable."""
        text = self.string(node, key, path)
        if text is None:
            return None
        resolved = self.resolve_path(text)
        if not _is_file(resolved):
            self.issue(join(path, key), f"file not found: {resolved}", "create it or fix the path")
            return None
        if not os.access(resolved, os.R_OK):
            self.issue(join(path, key), f"file not readable: {resolved}", "check its permissions")
            return None
        return resolved

    def _credential_candidates(self, text: str) -> list[Path]:
        """Where a credential file named in the config may be: a relative name in
        `$CREDENTIALS_DIRECTORY` (systemd's LoadCredential=) first, then the usual place."""
        candidates = []
        credentials = self.env.get("CREDENTIALS_DIRECTORY")
        if credentials and not Path(text).is_absolute():
            candidates.append(Path(credentials) / text)
        candidates.append(self.resolve_path(text))
        return candidates

    def credential_file(self, node: Mapping[str, Any], key: str, path: str) -> Path | None:
        """A file holding key material (a private key, a PFX, a certificate): like
        `existing_file`, but a relative name is looked up in `$CREDENTIALS_DIRECTORY` first."""
        text = self.string(node, key, path)
        if text is None:
            return None
        candidates = self._credential_candidates(text)
        for candidate in candidates:
            if _is_file(candidate):
                if not os.access(candidate, os.R_OK):
                    self.issue(
                        join(path, key), f"file not readable: {candidate}", "check its permissions"
                    )
                    return None
                return candidate
        shown = " or ".join(str(candidate) for candidate in candidates)
        self.issue(
            join(path, key),
            f"file not found: {shown}",
            "create it or fix the path (under systemd: LoadCredential=NAME:/path/to/file)",
        )
        return None

    def secret(
        self, node: Mapping[str, Any], key: str, path: str, *, required: bool, what: str
    ) -> Secret | None:
        """A secret given inline (usually as `${ENV}`) or by `<key>_file`.

        A relative `_file` path is looked up in `$CREDENTIALS_DIRECTORY` (systemd's
        LoadCredential) first, then beside the config file. The value is never quoted.
        """
        file_key = f"{key}_file"
        inline, from_file = node.get(key), node.get(file_key)
        if inline is not None and from_file is not None:
            self.issue(join(path, key), f"both {key} and {file_key} are set", "keep only one")
            return None
        if from_file is not None:
            return self._secret_from_file(node, file_key, path, what)
        if inline is None:
            if required:
                self.issue(
                    join(path, key),
                    f"{what} is required",
                    f"set {file_key} to a file that holds it, or {key}: ${{ENV_VAR}}",
                )
            return None
        if isinstance(inline, bool) or not isinstance(inline, str | int):
            self.issue(join(path, key), f"expected a string, got {_describe(inline)}")
            return None
        reported = len(self.issues)
        value = self._expand(str(inline), join(path, key))
        if not value:
            if len(self.issues) == reported:  # not already explained by a missing variable
                self.issue(join(path, key), f"{what} is empty")
            return None
        return Secret(value)

    def _secret_from_file(
        self, node: Mapping[str, Any], file_key: str, path: str, what: str
    ) -> Secret | None:
        text = self.string(node, file_key, path)
        where = join(path, file_key)
        if not text:
            self.issue(where, "expected a file name")
            return None
        candidates = self._credential_candidates(text)
        for candidate in candidates:
            if _is_file(candidate):
                try:
                    value = candidate.read_text(encoding="utf-8").strip()
                except OSError as error:
                    self.issue(
                        where, f"cannot read {candidate}: {error.strerror}", "check permissions"
                    )
                    return None
                except UnicodeDecodeError:
                    self.issue(where, f"{candidate} is not UTF-8 text", f"write the {what} in it")
                    return None
                if not value:
                    self.issue(where, f"{candidate} is empty", f"write the {what} into it")
                    return None
                return Secret(value)
        shown = " or ".join(str(candidate) for candidate in candidates)
        self.issue(where, f"file not found: {shown}", f"create it with the {what}, mode 0600")
        return None


def _is_file(path: Path) -> bool:
    """Whether `path` is a file; False for any path the system refuses (a name too long …)."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_mailbox(reader: Reader, node: Mapping[str, Any], key: str, path: str) -> str:
    """A mailbox address under `key` ("" when absent or invalid, with an issue)."""
    text = reader.string(node, key, path) or ""
    if not text:
        return ""
    address = parse_mailbox(text)
    if address is None:
        reader.issue(
            join(path, key), f"not a mailbox address: {text!r}", "e.g. scanner@contoso.com"
        )
        return ""
    return str(address)


def check_unique(reader: Reader, path: str, names: list[str], key: str) -> None:
    """Names that must be unique (listeners, clients, users, tenants)."""
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name and name.lower() in seen:
            reader.issue(join(join(path, index), key), f"duplicate {key} {name!r}")
        seen.add(name.lower())
