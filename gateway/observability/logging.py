"""structlog set-up: JSON lines when not on a terminal, readable console output on one.

Libraries that could log message content or credentials are held at WARNING whatever the
configured level: aiosmtpd's `mail.log` logs every DATA line at DEBUG, msal and urllib3 log
request details.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

_QUIET_LIBRARIES = ("mail.log", "msal", "urllib3", "aiohttp.access", "asyncio")


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging to `stream` (stderr) at `level`."""
    output = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    console = fmt == "console" or (fmt == "auto" and output.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=output.isatty())
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if not console
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(output),
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
