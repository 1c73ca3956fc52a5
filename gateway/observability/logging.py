"""structlog set-up: JSON lines when not on a terminal, readable console output on one.

Libraries that could log message content or credentials are held at WARNING whatever the
configured level: aiosmtpd's `mail.log` logs every DATA line at DEBUG, msal and urllib3 log
request details. Lines go through a `LogWriter`, so a blocked stderr never blocks the event loop.
What is still buffered is written at exit, or when `flush_logs` is called.
"""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Callable
from typing import Any, ClassVar, TextIO, cast

import structlog

from gateway.observability.logwriter import LogWriter

_QUIET_LIBRARIES = ("mail.log", "mail.debug", "msal", "urllib3", "aiohttp.access", "asyncio")
_LIBRARY_FIELDS = {"peer", "command", "command_length", "message"}


class _SmtpLibraryEvents(logging.Filter):
    """aiosmtpd's own warnings as events of ours (`smtp_unrecognised_command`, not a peer tuple
    and a sentence as the event). A line it did not recognise may be a password: a device that
    goes on with AUTH LOGIN after its AUTH was refused sends the password as a command line. Of
    such a line only the length is logged."""

    _EVENTS: ClassVar[dict[str, str]] = {
        "%r unrecognised: %s": "smtp_unrecognised_command",
        "%r too many bogus commands": "smtp_too_many_unrecognised_commands",
        "%r over limit for %s": "smtp_command_limit",
        "%r aborted AUTH with '*'": "smtp_auth_aborted",
        "%r invalid PROXY handshake": "proxy_header_invalid",
        "%r connection timeout": "smtp_timeout",
        "%r SMTP session exception": "smtp_session_exception",
        "%r Exception in handle_exception()": "smtp_session_exception",
    }
    # Said when a listener is built: about settings the gateway chose (implicit TLS listeners
    # require AUTH without aiosmtpd's STARTTLS check, see `smtp.listeners`), not news.
    _CHOSEN: ClassVar[frozenset[str]] = frozenset(
        {"auth_required == True but auth_require_tls == False"}
    )
    # Texts without a peer (the PROXY parser's, formatted before logging), by their start.
    _PREFIXES: ClassVar[tuple[tuple[str, str], ...]] = (
        ("PROXY", "proxy_header_invalid"),
        ("Session.login_data", "smtp_library_deprecation"),
        ("tls_context.", "smtp_tls_context_warning"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        event = self._EVENTS.get(str(record.msg))
        if event is None:
            text = record.getMessage()
            if text in self._CHOSEN:
                return False
            event = next(
                (name for start, name in self._PREFIXES if text.startswith(start)),
                "smtp_library_warning",
            )
            record.msg, record.args = event, ()
            record.message = text[:200]
            return True
        peer = args[0] if args else None
        record.peer = peer[0] if isinstance(peer, tuple) and peer else str(peer)
        if event == "smtp_unrecognised_command" and len(args) > 1:
            record.command_length = len(str(args[1]))
        elif event == "smtp_command_limit" and len(args) > 1:
            record.command = str(args[1])[:16]
        record.msg, record.args = event, ()
        return True


_writer: LogWriter | None = None
_static: dict[str, str] = {}  # fields every line carries (a cluster node's name)


def add_log_fields(**fields: str) -> None:
    """Fields every log line from now on carries, e.g. `node` in a cluster."""
    _static.update(fields)


def _static_fields(_logger: Any, _method: str, event: Any) -> Any:
    for key, value in _static.items():
        event.setdefault(key, value)
    return event


def _dropped_notice(chain: list[structlog.typing.Processor]) -> Callable[[int], str]:
    """The line that says how many lines a blocked stream made us drop, rendered by the same
    processors as every other line."""

    def notice(count: int) -> str:
        event: Any = {
            "event": "log_lines_dropped",
            "count": count,
            "action": "the log's reader (journald, a pipe) did not keep up; mail was not affected",
        }
        for processor in chain:
            event = processor(None, "warning", event)
        return f"{event}\n"

    return notice


def flush_logs(timeout: float = 5.0) -> bool:
    """Wait until every log line so far has been written out; False if that timed out."""
    return _writer.drain(timeout) if _writer is not None else True


def _close_writer() -> None:
    global _writer  # noqa: PLW0603 - logging is process-wide, like structlog's own set-up
    if _writer is not None:
        _writer.close()
        _writer = None


atexit.register(_close_writer)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stderr) at `level`."""
    global _writer  # noqa: PLW0603 - see _close_writer
    real = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    console = fmt == "console" or (fmt == "auto" and real.isatty())
    shared: list[structlog.typing.Processor] = [
        _static_fields,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=real.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    _close_writer()  # lines logged under the previous set-up go out first
    _writer = LogWriter(real, _dropped_notice([*shared, renderer]))
    output = cast(TextIO, _writer)  # file-like: write, flush, isatty
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if not console
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(output),  # one write() per line
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(_LIBRARY_FIELDS)],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    for name in ("mail.log", "mail.debug"):
        library = logging.getLogger(name)
        library.filters[:] = [f for f in library.filters if not isinstance(f, _SmtpLibraryEvents)]
        library.addFilter(_SmtpLibraryEvents())
