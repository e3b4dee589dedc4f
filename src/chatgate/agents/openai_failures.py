"""Naming a failure of an OpenAI-compatible model server, without its key.

:func:`failure_for` maps the exceptions of the ``openai`` package to the
``model_*`` codes of docs/protocol.md section 7; :func:`redact` keeps keys out of
the message shown to the user and written to the log.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import openai

from chatgate.agents.base import AgentFailure

# The model's own words about a failure are worth showing (an unknown model
# name, say), cut to this length; longer text is a page of HTML from a proxy.
_SERVER_MESSAGE_CHARS = 200
# Servers echo keys back in error messages, sometimes partly masked
# ("sk-proj-****abcd"); anything shaped like a key, a masked key or a bearer
# token goes, whatever key this agent holds.
_KEY_SHAPES = re.compile(r"\b(?:sk|pk|rk)-[\w\-*.]+|\S*\*{3,}\S*|(?i:bearer)\s+\S+")


def bad_response(detail: str) -> AgentFailure:
    """``model_bad_response``: the server sent ``detail``, which this agent cannot use."""
    return AgentFailure("model_bad_response", f"the model server sent {detail}")


def redact(message: str, key: str | None) -> str:
    """``message`` without ``key`` or anything shaped like a key, cut to a readable length."""
    if key:
        message = message.replace(key, "[redacted]")
    message = _KEY_SHAPES.sub("[redacted]", message)
    return message[:_SERVER_MESSAGE_CHARS]


def _server_words(error: openai.APIError) -> str:
    """The message the server put in its error body, if it sent one."""
    body = error.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str) and message.strip():
            return f": {message.strip()}"
    return ""


def _status_failure(error: openai.APIStatusError, where: str) -> AgentFailure:
    status = error.status_code
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        # No server words here: an auth error is where servers quote the key.
        return AgentFailure(
            "model_auth_failed", f"the model server at {where} refused the key (HTTP {status})"
        )
    if isinstance(error, openai.RateLimitError):
        code, what = "model_rate_limited", "is rate limiting"
    elif status >= 500:  # noqa: PLR2004 - the server-error class of HTTP
        code, what = "model_unavailable", "failed"
    else:
        code, what = "model_bad_response", "refused the request"
    message = f"the model server at {where} {what} (HTTP {status}){_server_words(error)}"
    return AgentFailure(code, message)


def failure_for(error: openai.OpenAIError, *, streaming: bool, where: str) -> AgentFailure:
    """Name a failure of the model server by its ``model_*`` code (docs/protocol.md section 7).

    ``streaming`` tells whether the answer had begun; ``where`` is the server's
    address without credentials. The message may quote the server and so hold
    the key: the caller passes it through :func:`redact`.
    """
    if isinstance(error, openai.APIStatusError):
        return _status_failure(error, where)
    if isinstance(error, openai.APITimeoutError):
        return AgentFailure("model_unavailable", f"the model server at {where} timed out")
    if isinstance(error, openai.APIConnectionError):
        if streaming:
            return bad_response("an answer that broke off mid-stream")
        return AgentFailure("model_unavailable", f"cannot reach the model server at {where}")
    if isinstance(error, openai.APIError):
        return bad_response(f"an error{_server_words(error)}")
    return bad_response(f"something the openai package cannot read ({type(error).__name__})")


def server_address(base_url: str | None) -> str:
    """``scheme://host[:port]`` of ``base_url``, never its user, password, path or query."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port out of range: the request fails, and says so
        port = ""
    return f"{parts.scheme}://{host}{port}"
