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
from typing import Any, TextIO, cast

import structlog

from gateway.observability.logwriter import LogWriter

_QUIET_LIBRARIES = ("mail.log", "msal", "urllib3", "aiohttp.access", "asyncio")


_writer: LogWriter | None = None


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
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
