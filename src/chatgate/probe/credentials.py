"""The tokens the probe and the checks present: a given one, or test tokens minted with the E2E key.

Tokens and keys never leave this module except on the wire: :meth:`Credentials.secrets`
lists them so the report can redact any that a server or proxy echoes back.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

import jwt

from chatgate.auth.minting import mint_test_token, mint_token
from chatgate.e2e import TEST_KEY_ID, TEST_SUBJECT_PREFIX

DEFAULT_USER = "chatgate-probe"
"""The subject of minted test tokens; ``chatgate probe --user`` shows the same default."""
_EXPIRED_BY_S = 120


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the probe may authenticate with."""

    token: str | None = field(default=None, repr=False)
    e2e_key: str | None = field(default=None, repr=False)
    user: str = DEFAULT_USER

    @property
    def can_mint(self) -> bool:
        """Whether test tokens for any user can be minted (``--e2e-key``)."""
        return bool(self.e2e_key)

    @property
    def has_token(self) -> bool:
        """Whether there is a token for the main user."""
        return bool(self.token) or self.can_mint

    def primary(self) -> str | None:
        """The main user's token: ``--token``, else a test token minted for ``--user``."""
        if self.token:
            return self.token
        return self.minted(self.user) if self.e2e_key else None

    def minted(self, user: str, *, expired: bool = False) -> str:
        """A test token for ``user`` (already expired when asked).

        Raises:
            ValueError: no E2E key was given.
        """
        if not self.e2e_key:
            raise ValueError("minting test tokens needs --e2e-key")
        if expired:
            issued = time.time() - _EXPIRED_BY_S
            return mint_test_token(self.e2e_key, user, ttl_s=_EXPIRED_BY_S // 2, now=issued)
        return mint_test_token(self.e2e_key, user)

    def secrets(self) -> list[str]:
        """Every secret string a report must never show."""
        return [value for value in (self.token, self.e2e_key) if value]


def expected_user(token: str) -> str | None:
    """The user id a server should give this token's session, read without verifying it.

    Test tokens get the ``e2e:`` prefix (docs/protocol.md section 3). None when the
    token cannot be read.
    """
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    subject = claims.get("sub")
    if not isinstance(subject, str):
        return None
    return TEST_SUBJECT_PREFIX + subject if header.get("kid") == TEST_KEY_ID else subject


def forged_token(user: str) -> str:
    """A well-formed token signed with a random key: every server must refuse its signature."""
    return mint_token(secrets.token_urlsafe(32), user)


def foreign_test_token(user: str) -> str:
    """A test token signed with a random key, for a server where E2E mode is off."""
    return mint_test_token(secrets.token_urlsafe(32), user)
