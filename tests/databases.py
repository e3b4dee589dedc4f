"""Databases for the store tests: a fresh PostgreSQL schema or SQLite file per test."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def require_postgres() -> None:
    """Skip without PostgreSQL, except under CI, where its absence is a failure."""
    if not postgres_answers():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is required at 127.0.0.1:5432 when CI=true")
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")


@contextlib.asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    """A URL whose tables live in a schema of their own, dropped afterwards."""
    require_postgres()
    schema = f"test_{secrets.token_hex(6)}"
    try:
        yield f"{PG_URL}?search_path={schema}"
    finally:
        conn = await asyncpg.connect(PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of an empty database of ``kind``: memory, sqlite or postgresql."""
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{secrets.token_hex(4)}.db'}"
    else:
        async with postgres_schema() as url:
            yield url
