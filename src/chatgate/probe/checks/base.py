"""What a deployment check is: an id, a name, what it needs, and a coroutine that judges."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from chatgate.client.errors import ConnectionLost, ServerClosed
from chatgate.closecodes import CLOSE_CODES, CloseCode
from chatgate.probe.budgets import Budgets
from chatgate.probe.context import ProbeContext
from chatgate.probe.outcome import Problem, Skip, failure_for
from chatgate.probe.wire import Wire


class Need(enum.Enum):
    """What a check needs beyond the URL."""

    NOTHING = "nothing"
    CREDENTIAL = "a credential (--token or --e2e-key)"
    MINTING = "--e2e-key, to mint test tokens"


@dataclass(slots=True)
class CheckRun:
    """One run of the checks: the shared context and the budgets."""

    ctx: ProbeContext
    budgets: Budgets

    def token(self) -> str:
        """The main user's token.

        Raises:
            Skip: no --token and no --e2e-key.
        """
        token = self.ctx.credentials.primary()
        if token is None:
            raise Skip(f"needs {Need.CREDENTIAL.value}")
        return token

    def user_token(self, user: str) -> str:
        """A minted test token for ``user`` (``<--user>-<user>``, so runs never collide).

        Raises:
            Skip: no --e2e-key.
        """
        if not self.ctx.credentials.can_mint:
            raise Skip(f"needs {Need.MINTING.value}")
        return self.ctx.credentials.minted(f"{self.ctx.credentials.user}-{user}")

    async def open(self, token: str | None = None, doing: str = "opening a socket") -> Wire:
        """An authenticated socket for ``token`` (default: the main user's).

        Raises:
            Problem: the socket could not be opened or was closed.
        """
        return await Wire.open(self.ctx, token or self.token(), doing=doing)


CheckBody = Callable[[CheckRun], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Check:
    """One of the deployment checks."""

    id: str
    name: str
    needs: Need
    body: CheckBody
    passes_when: str


def slug_of(code: CloseCode) -> str:
    """The slug the close-code table gives ``code``."""
    return CLOSE_CODES[code].slug


def expect_close(
    ended: ServerClosed | ConnectionLost, code: CloseCode, doing: str, elapsed_s: float
) -> str:
    """A summary when the socket closed with ``code`` and its slug.

    Raises:
        Problem: another code, another slug, or a drop.
    """
    if isinstance(ended, ServerClosed) and ended.code == code and ended.slug == slug_of(code):
        return f"closed {ended.code} {ended.slug} after {elapsed_s:.2f} s"
    expected = f"{doing}, expecting {int(code)} {slug_of(code)}"
    raise Problem(failure_for(ended, doing=expected, elapsed_s=elapsed_s))
