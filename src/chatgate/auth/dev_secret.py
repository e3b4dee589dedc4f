"""The development JWT secret, kept in a file next to the SQLite database.

With no key configured, ``chatgate serve`` in the development tier generates
an HS256 secret. When the store is a SQLite file the secret is written once
beside it (``./chatgate.db`` gives ``./chatgate.dev-secret``, mode 0600) and
reused by every later start, so that tokens outlive a restart as the chats do,
and ``chatgate token --sub <name>`` can mint tokens the server accepts. Never
in another tier: there a key is configured or the boot stops. Never with
``memory://``: nothing else survives the process either, so the secret stays
in memory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from chatgate.errors import ConfigError
from chatgate.settings import MIN_HMAC_KEY_BYTES, Settings
from chatgate.tiers import Tier

SUFFIX = ".dev-secret"


def dev_secret_path(settings: Settings) -> Path | None:
    """Where the development secret is kept, or None where none is kept (see module doc)."""
    if settings.tier_decision.tier is not Tier.DEVELOPMENT:
        return None
    scheme, _, rest = settings.database_url.partition("://")
    if scheme.partition("+")[0].lower() != "sqlite" or not rest.startswith("/"):
        return None
    database = rest[1:].partition("?")[0]
    if database in {"", ":memory:"}:
        return None
    return Path(database).expanduser().with_suffix(SUFFIX)


def read_dev_secret(path: Path) -> str | None:
    """The secret kept at ``path``, or None when there is none (yet).

    Raises:
        ConfigError: the file holds something too short to be a secret.
    """
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError("CHATGATE_JWT_SECRET", f"cannot read {path}: {exc.strerror}") from None
    if len(secret.encode()) < MIN_HMAC_KEY_BYTES:
        raise ConfigError(
            "CHATGATE_JWT_SECRET", f"{path} is too short to be a secret: delete it to get a new one"
        )
    return secret


def dev_secret(path: Path) -> str:
    """The secret kept at ``path``, written there first (mode 0600) if there is none.

    Raises:
        ConfigError: the file cannot be written or read.
    """
    existing = read_dev_secret(path)
    if existing is not None:
        return existing
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Another process started at the same moment and wrote it first.
        with contextlib.suppress(ConfigError):
            raced = read_dev_secret(path)
            if raced is not None:
                return raced
        raise ConfigError("CHATGATE_JWT_SECRET", f"{path} appeared empty; delete it") from None
    except OSError as exc:
        raise ConfigError("CHATGATE_JWT_SECRET", f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret
