"""The SQL stores' schema as SQLAlchemy tables, JSON and time codecs, and error mapping.

The tables only describe the schema for queries: it is created and changed by the
Alembic migrations in ``chatgate.store.migrations``, applied by :func:`upgrade_schema`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from chatgate.errors import StoreUnavailable
from chatgate.protocol import timestamp
from chatgate.store.group_commit import GroupCommitClosed

T = TypeVar("T")

MIGRATIONS = "chatgate.store:migrations"
VERSION_TABLE = "chatgate_schema_version"
TERMINAL_EVENTS = ("agent_completed", "agent_error")


class Timestamp(TypeDecorator[str]):
    """A UTC time, kept as a timestamp column and seen by Python as the protocol's string."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> datetime | None:
        """Parse ``2026-01-01T00:00:00.000Z`` for the driver."""
        del dialect
        return None if value is None else datetime.fromisoformat(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        """Format what the driver returns (naive means UTC: SQLite keeps no zone)."""
        del dialect
        if value is None:
            return None
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return timestamp(moment.astimezone(UTC))


metadata = MetaData()

threads = Table(
    "threads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("last_event_id", BigInteger, nullable=False),
)

messages = Table(
    "messages",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("thread_id", String(64), ForeignKey("threads.id"), nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("run_id", String(64)),
    Column("created_at", Timestamp, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("thread_id", String(64), ForeignKey("threads.id"), primary_key=True),
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("run_id", String(64)),
    # JSON, not JSONB: the payload is only ever read back whole, and JSON keeps its text as sent.
    Column("payload", JSON(), nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("thread_id", String(64), ForeignKey("threads.id"), nullable=False),
    Column("owner", Text, nullable=False),
    Column("instance_id", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(255), primary_key=True),
    Column("heartbeat_at", Float, nullable=False),
    Column("base", String(255)),
    Column("configured", Boolean),
    Column("host", String(255)),
    Column("pid", Integer),
)


@contextlib.contextmanager
def unavailable_on_driver_errors(kind: str, where: str = "") -> Iterator[None]:
    """Turn "the database does not answer" into ``StoreUnavailable``; let bugs through.

    The message names the store kind, ``where`` it is (``host:port/database``,
    never a credential) and the error class only: a driver's own message can
    carry SQL, parameters or a connection URL.
    """
    store = f"{kind} store at {where}" if where else f"{kind} store"
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise StoreUnavailable(f"{store} unavailable: {type(exc.orig).__name__}") from exc
    except sa_exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        raise StoreUnavailable(f"{store} unavailable: connection lost") from exc
    except (
        sa_exc.DisconnectionError,
        sa_exc.TimeoutError,
        OSError,
        TimeoutError,
        GroupCommitClosed,
    ) as exc:
        raise StoreUnavailable(f"{store} unavailable: {type(exc).__name__}") from exc


def dump_json(value: Any) -> str:
    """The engines' JSON serializer; a ``str`` is taken as JSON that is already encoded."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def load_json(data: str | bytes) -> Any:
    """The engines' JSON deserializer."""
    return orjson.loads(data)


def upgrade_schema(connection: Connection) -> None:
    """Apply every pending migration on ``connection``, inside its transaction."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
