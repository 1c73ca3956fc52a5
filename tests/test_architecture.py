"""Dependencies point inward: pure modules import no I/O library, adapters stay in their lane."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

PURE = ("gateway.addresses", "gateway.routing", "gateway.policy", "gateway.mime", "gateway.config",
        "gateway.errors", "gateway.replies", "gateway.delivery.classify", "gateway.delivery.backoff",
        "gateway.spool.format", "gateway.passwords")
IO_LIBRARIES = ("asyncio", "aiohttp", "aiosmtpd", "msal", "requests", "socket", "ssl", "structlog",
                "subprocess", "urllib.request")
# library -> the only modules (prefixes) that may import it
OWNERS = {
    "aiosmtpd": ("gateway.smtp",),
    "msal": ("gateway.graph.tokens", "gateway.graph.delegated"),
    "requests": ("gateway.graph.tokens", "gateway.graph.delegated"),
}
COMPOSITION_ROOTS = ("gateway.app", "gateway.cli", "gateway.demo", "gateway.__main__")
# queue_cli is part of the command line; cli imports it.


def modules() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imports: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports.add(node.module)
        found[name] = imports
    return found


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_pure_core_imports_no_io_library() -> None:
    for name, imports in modules().items():
        if under(name, PURE):
            bad = [i for i in imports if under(i, IO_LIBRARIES)]
            assert not bad, f"{name} is pure but imports {bad}"


def test_libraries_are_imported_only_by_their_adapter() -> None:
    for name, imports in modules().items():
        for library, owners in OWNERS.items():
            if any(under(i, (library,)) for i in imports):
                assert under(name, owners), f"{name} imports {library}; only {owners} may"


def test_aiohttp_client_only_in_graph_client() -> None:
    for name, imports in modules().items():
        if "aiohttp" in imports and not under(name, ("gateway.emulator", "gateway.observability")):
            assert name in ("gateway.graph.client", "gateway.app"), name


def test_nothing_imports_the_composition_roots() -> None:
    for name, imports in modules().items():
        for root in COMPOSITION_ROOTS:
            if root in imports:
                assert name in COMPOSITION_ROOTS, f"{name} imports {root}"


def test_emulator_is_self_contained() -> None:
    for name, imports in modules().items():
        if under(name, ("gateway.emulator",)):
            foreign = [i for i in imports if i.startswith("gateway") and not under(i, ("gateway.emulator",))]
            assert not foreign, f"{name} imports {foreign}"
