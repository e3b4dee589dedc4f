"""The user session: built from a verified token, in this one place only.

The user id is the verified ``sub`` claim (prefixed ``e2e:`` for test tokens)
and nothing else; no client field can set it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from chatgate.auth.tokens import VerifiedToken
from chatgate.closecodes import CloseCode
from chatgate.e2e import TEST_SUBJECT_PREFIX
from chatgate.errors import AuthError, SessionInvalid

MAX_SUBJECT_BYTES = 255


@dataclass(frozen=True, slots=True)
class Session:
    """One authenticated connection's identity, complete from the handshake on.

    A token refresh makes a new session (:meth:`refreshed`); nothing changes one.
    ``claims`` are the verified token's claims, handed to agents in the run context.
    """

    user_id: str
    connection_id: str
    expires_at: float
    is_test: bool
    e2e_context: dict[str, Any] | None = field(default=None, repr=False)
    auth_method: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def refreshed(self, token: VerifiedToken) -> Session:
        """The session under a refreshed token of the same user (raises SessionInvalid).

        Raises:
            AuthError: the token is another user's (4003).
        """
        if user_id_for(token) != self.user_id:
            raise AuthError(CloseCode.AUTH_INVALID, "token of another user")
        return replace(self, expires_at=token.expires_at, claims=token.claims)


# Unicode's control characters (category Cc) are exactly these 65 code points.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _has_control_characters(text: str) -> bool:
    return _CONTROL_CHARACTERS.search(text) is not None


def user_id_for(token: VerifiedToken) -> str:
    """Return the user id the token's subject maps to.

    Raises:
        SessionInvalid: the subject is empty, over 255 bytes, holds control
            characters, or claims the test namespace on a token that is not a test token.
    """
    subject = token.subject
    if not subject:
        raise SessionInvalid("empty sub")
    try:
        encoded = subject.encode()
    except UnicodeEncodeError:
        # A lone surrogate: the verifier refuses such tokens, but a session is
        # never built from a subject that cannot be written anywhere.
        raise SessionInvalid("sub is not valid Unicode") from None
    if len(encoded) > MAX_SUBJECT_BYTES:
        raise SessionInvalid(f"sub longer than {MAX_SUBJECT_BYTES} bytes")
    if _has_control_characters(subject):
        raise SessionInvalid("sub holds control characters")
    if token.is_test:
        return TEST_SUBJECT_PREFIX + subject
    if subject.startswith(TEST_SUBJECT_PREFIX):
        raise SessionInvalid(f"sub starts with {TEST_SUBJECT_PREFIX!r} on a non-test token")
    return subject


def build_session(
    token: VerifiedToken,
    connection_id: str,
    e2e_context: dict[str, Any] | None,
    auth_method: str | None = None,
) -> Session:
    """Build the session of a connection from its verified token (raises SessionInvalid)."""
    return Session(
        user_id=user_id_for(token),
        connection_id=connection_id,
        expires_at=token.expires_at,
        is_test=token.is_test,
        e2e_context=e2e_context if token.is_test else None,
        auth_method=auth_method,
        claims=token.claims,
    )
