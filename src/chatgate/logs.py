"""Structured logging: one JSON object a line in containers, readable lines on a terminal.

Log lines never carry a token, key or secret: callers pass identifiers only.
"""

from __future__ import annotations

import logging
import secrets
import sys
from typing import Any

import structlog


def correlation_id() -> str:
    """A short random id tying a client-visible error to its log line."""
    return secrets.token_hex(8)


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Route structlog and the standard library (uvicorn) to stderr in one format."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # One line per WebSocket handshake would be the loudest thing in the log;
    # the gateway logs what matters about a connection itself.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").addFilter(_drop_per_connection_lines)


def _drop_per_connection_lines(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (message in {"connection open", "connection closed"} or '"WebSocket ' in message)


def get_logger(name: str = "chatgate") -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
