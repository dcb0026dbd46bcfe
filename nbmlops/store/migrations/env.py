"""Alembic environment for the nbmlops store.

nbmlops runs migrations itself (``ensure_schema``) on a connection it passes in
``config.attributes["connection"]``; ``render_as_batch`` lets ALTERs work on SQLite.
"""

from __future__ import annotations

from alembic import context

from nbmlops.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when a developer runs the alembic CLI
    from sqlalchemy import create_engine

    connection = create_engine(config.get_main_option("sqlalchemy.url") or "").connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
