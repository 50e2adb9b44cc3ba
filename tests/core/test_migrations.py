"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from teleserve.core import migrate
from teleserve.core.db import make_engine
from teleserve.models import load_all


def test_upgrade_from_empty_matches_models(settings, request):
    url = settings.database_url
    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        # The shared per-worker test database holds create_all tables: use a schema of
        # our own and point the migration at it through search_path.
        engine.dispose()
        request.getfixturevalue("_pg_engine")
        admin = make_engine(url)
        with admin.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS migration_check CASCADE"))
            conn.execute(text("CREATE SCHEMA migration_check"))
        admin.dispose()
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}options=-csearch_path%3Dmigration_check"
        engine = make_engine(url)
    else:
        engine.dispose()
        url = url.replace("test.db", "migrated.db")
        engine = make_engine(url)
    try:
        migrate.upgrade(url)
        assert migrate.current_revision(engine) == migrate.head_revision(url)
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}),
                load_all().metadata,
            )
            tables = set(inspect(conn).get_table_names())
            if conn.dialect.name == "postgresql":
                # Standalone sequences are invisible to compare_metadata: check by name.
                expected = {s.name for s in load_all().metadata._sequences.values()}
                assert expected <= set(inspect(conn).get_sequence_names())
        assert not diff, f"models and migrations differ: {diff}"
        assert set(load_all().metadata.tables) <= tables
    finally:
        engine.dispose()
