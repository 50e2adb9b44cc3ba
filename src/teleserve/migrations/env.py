"""Alembic environment: the URL comes from Teleserve's settings (or the caller's config)."""

from __future__ import annotations

from alembic import context

from teleserve.core.db import make_engine
from teleserve.core.settings import get_settings
from teleserve.models import load_all

config = context.config
target_metadata = load_all().metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things in place: batch mode copies the table.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
