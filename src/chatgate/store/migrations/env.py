"""Alembic's environment: run the migrations on the connection chatgate hands over.

chatgate opens the connection itself (the store's engine, in a transaction
that on PostgreSQL holds the migration lock), so there is no ``alembic.ini``
and no URL here.
"""

from __future__ import annotations

from alembic import context

from chatgate.store.schema import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run `chatgate migrate`: the migrations need chatgate's connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
