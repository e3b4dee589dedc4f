"""Exceptions raised by chatgate.

The tree::

    ChatgateError
    ├── ConfigError            bad configuration; stops the process at boot (exit 2; exit 3
    │                          when a PostgreSQL server refuses the database or role)
    ├── CloseConnection        a socket must close with a code of the table
    │   ├── AuthError          a credential was missing or rejected (4001, 4003, 4004, 4005)
    │   └── SessionInvalid     no session could be built from verified claims (4007)
    ├── StoreUnavailable       the store does not answer
    └── BrokerUnavailable      the broker does not answer
"""

from __future__ import annotations

from chatgate.closecodes import CloseCode, close_reason


class ChatgateError(Exception):
    """Root of every exception chatgate raises on purpose."""


class ConfigError(ChatgateError):
    """Configuration that cannot work; names the variable at fault."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class CloseConnection(ChatgateError):
    """The socket must close with ``code``; ``detail`` goes after the slug."""

    def __init__(self, code: CloseCode, detail: str = "") -> None:
        super().__init__(close_reason(code, detail))
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        """The close reason, ``"<slug>: <detail>"``, at most 123 bytes."""
        return close_reason(self.code, self.detail)


class AuthError(CloseConnection):
    """A credential was missing or rejected."""


class SessionInvalid(CloseConnection):
    """The verified claims cannot make a session."""

    def __init__(self, detail: str) -> None:
        super().__init__(CloseCode.SESSION_INVALID, detail)


class StoreUnavailable(ChatgateError):
    """The store does not answer."""


class BrokerUnavailable(ChatgateError):
    """The broker does not answer."""
