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
#
# Linear in the line's length whatever it holds. Bearer credentials go first;
# then a JWT candidate is matched from a literal "eyJ" to the end of its run of
# token characters, which never backtracks, and its shape is checked by
# _jwt_start without a regex. A pattern such as "eyJ[...]*\.[...]+\." rescans
# the rest of the run from every "eyJ": quadratic, minutes of CPU for one line
# of a megabyte of them.
_BEARER = re.compile(r"(?i:bearer)[ .]+[^\s,;\"']+")
_JWT_CANDIDATE = re.compile(r"eyJ[A-Za-z0-9_.-]*")
# A request line logged verbatim (websockets at DEBUG) may carry a credential in
# its query, which the gateway never reads but must not write down either.
_QUERY_CREDENTIAL = re.compile(
    r"(?i)([?&](?:token|access_token|id_token|jwt|auth|api_key|key)=)[^&\s#\"']*"
)
REDACTED = "[redacted]"


def _jwt_start(run: str) -> int:
    """Where the first JWT of ``run`` (``eyJ…`` then two dots) begins, or -1.

    A JWT is ``eyJ<a>.<b>.<c>`` with ``<b>`` not empty. Every "eyJ" before the
    same first dot shares the verdict, so each step moves past a dot: linear.
    """
    start = 0
    while True:
        first_dot = run.find(".", start)
        if first_dot == -1 or first_dot + 1 >= len(run):
            return -1
        if run[first_dot + 1] != "." and run.find(".", first_dot + 1) != -1:
            return start
        if run[first_dot + 1] != ".":
            # No dot after this one: no later start can have two.
            return -1
        start = run.find("eyJ", first_dot + 1)
        if start == -1:
            return -1


def _replace_jwt(match: re.Match[str]) -> str:
    found = match.group()
    start = _jwt_start(found)
    return found if start == -1 else found[:start] + REDACTED


def redact(text: str) -> str:
    """``text`` with every token-shaped or bearer credential replaced."""
    # A redacted bearer value leaves "[redacted]", which starts no JWT; a JWT
    # left after a "bearer " would have been that bearer's value.
    text = _QUERY_CREDENTIAL.sub(rf"\g<1>{REDACTED}", text)
    return _JWT_CANDIDATE.sub(_replace_jwt, _BEARER.sub(REDACTED, text))


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
