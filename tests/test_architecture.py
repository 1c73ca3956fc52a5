"""Dependencies point inward: pure modules import no I/O library, adapters stay in their lane."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gateway"

PURE = (
    "gateway.addresses",
    "gateway.routing",
    "gateway.policy",
    "gateway.mime",
    "gateway.config",
    "gateway.errors",
    "gateway.replies",
    "gateway.graph.classify",
    "gateway.delivery.backoff",
    "gateway.queue.model",
    "gateway.transport",
    "gateway.spool.format",
    "gateway.passwords",
)
IO_LIBRARIES = (
    "asyncio",
    "aiohttp",
    "aiosmtpd",
    "msal",
    "requests",
    "socket",
    "ssl",
    "structlog",
    "subprocess",
    "urllib.request",
)
# library -> the only modules (prefixes) that may import it
OWNERS = {
    "aiosmtpd": ("gateway.smtp",),
    "msal": ("gateway.entra",),
    "requests": ("gateway.entra",),
    "psycopg": ("gateway.pgqueue",),
    "psycopg_pool": ("gateway.pgqueue",),
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
        servers = ("gateway.emulator", "gateway.observability", "gateway.console")
        if "aiohttp" in imports and not under(name, servers):
            assert name in ("gateway.graph.client", "gateway.app"), name


def test_nothing_imports_the_composition_roots() -> None:
    for name, imports in modules().items():
        for root in COMPOSITION_ROOTS:
            if root in imports:
                assert name in COMPOSITION_ROOTS, f"{name} imports {root}"


def test_emulator_is_self_contained() -> None:
    for name, imports in modules().items():
        if under(name, ("gateway.emulator",)):
            foreign = [
                i
                for i in imports
                if i.startswith("gateway") and not under(i, ("gateway.emulator",))
            ]
            assert not foreign, f"{name} imports {foreign}"


# Layers, inside out. A module may import its own layer and those below it, never one above:
# the pure core knows no adapter, adapters know no orchestration, only the roots know it all.
LAYERS: tuple[tuple[str, ...], ...] = (
    # 0: the pure core (data, rules, formats, the seams' types)
    (
        "gateway.errors",
        "gateway.replies",
        "gateway.addresses",
        "gateway.config",
        "gateway.mime",
        "gateway.policy",
        "gateway.routing",
        "gateway.transport",
        "gateway.queue.model",
        "gateway.queue.base",
        "gateway.passwords",
        "gateway.spool.format",
        "gateway.graph.classify",
        "gateway.smtp_oauth.classify",
        "gateway.delivery.backoff",
        "gateway.delivery.budget",
        "gateway.delivery.mailboxes",
        "gateway.delivery.schedule",
        "gateway.delivery.job",
        "gateway.delivery.events",
        "gateway",
        "gateway.__init__",
    ),
    # 1: adapters: one outside thing each (sockets, files, HTTP, msal, logs)
    (
        "gateway.smtp",
        "gateway.spool",
        "gateway.pgqueue",
        "gateway.graph",
        "gateway.smtp_oauth",
        "gateway.entra",
        "gateway.observability",
        "gateway.queue",
        "gateway.control",
        "gateway.certs",
        "gateway.network",
        "gateway.emulator",
    ),
    # 2: orchestration: delivery over the seams; the console over the queue admin and status
    ("gateway.delivery", "gateway.console"),
    # 3: composition roots and commands
    (
        "gateway.app",
        "gateway.cli",
        "gateway.demo",
        "gateway.__main__",
        "gateway.queue_cli",
        "gateway.queues",
        "gateway.db_cli",
        "gateway.migrate_cli",
        "gateway.checks",
        "gateway.preflight",
    ),
)


def layer_of(name: str) -> int:
    """The layer of a module: the most specific prefix that names it."""
    best: tuple[int, int] | None = None
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if under(name, (prefix,)) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), number)
    assert best is not None, f"{name} is in no layer of tests/test_architecture.py"
    return best[1]


def test_no_module_imports_a_layer_above_it() -> None:
    for name, imports in modules().items():
        own = layer_of(name)
        for imported in imports:
            if imported.startswith("gateway"):
                above = layer_of(imported) > own
                assert not above, f"{name} (layer {own}) imports {imported} (layer above)"


def test_delivery_knows_no_concrete_transport_or_queue_backend() -> None:
    """Only the composition root wires Graph, SMTP OAuth and the file spool in."""
    concrete = (
        "gateway.graph",
        "gateway.smtp_oauth",
        "gateway.spool",
        "gateway.pgqueue",
        "gateway.entra",
    )
    for name, imports in modules().items():
        if under(name, ("gateway.delivery",)):
            bad = [i for i in imports if under(i, concrete)]
            assert not bad, f"{name} imports {bad}"
