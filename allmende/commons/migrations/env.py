"""Alembic environment: always run programmatically by `allmende.commons.db.upgrade`,
which passes an open connection (inside a write transaction) in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from allmende.commons.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through allmende.commons.db.upgrade(engine)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
