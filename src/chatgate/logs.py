"""Structured logging: one JSON object a line in containers, readable lines on a terminal.

Log lines never carry a token, key or secret: callers pass identifiers only.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Anything shaped like a JWT, and any bearer credential: libraries log raw
# handshake headers at DEBUG, and a line must never carry a token.
_CREDENTIAL = re.compile(
    r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?i:bearer)[ .]+[^\s,;\"']+"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every token-shaped or bearer credential replaced."""
    return _CREDENTIAL.sub(REDACTED, text)


def _redact_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = redact(value)
    return event


class _RedactingFilter(logging.Filter):
    """Redacts credentials from standard-library records (uvicorn, websockets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


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
        processors=[*shared, structlog.processors.format_exc_info, _redact_event, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactingFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _redact_event,
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
    # Alembic narrates every migration step at INFO; boot needs one line, not seven.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("uvicorn.error").addFilter(_drop_per_connection_lines)


def _drop_per_connection_lines(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (message in {"connection open", "connection closed"} or '"WebSocket ' in message)


def get_logger(name: str = "chatgate") -> Any:
    """A structlog logger."""
    return structlog.get_logger(name)
