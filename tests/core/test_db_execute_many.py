"""``core.db.execute_many`` / ``insert_many``: what SQLAlchemy's executemany does, faster.

On SQLite the rows go straight to the driver's cursor of the transaction's connection;
these hold that it stays the same transaction, raises what SQLAlchemy raises, and still
begins a transaction on a connection that has none yet."""

from __future__ import annotations

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from teleserve.core.db import execute_many, insert_many, table_of
from teleserve.core.sequences import RecordSequence

SEQUENCES = table_of(RecordSequence)


def _names(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(SEQUENCES.c.name).order_by(SEQUENCES.c.name)).scalars())


def test_rows_join_the_callers_transaction(engine):
    with engine.connect() as conn:
        conn.begin()
        insert_many(conn, SEQUENCES, [{"name": "A", "value": 1}, {"name": "B", "value": 2}])
        assert conn.scalar(select(func.count()).select_from(SEQUENCES)) == 2
        conn.rollback()
    assert _names(engine) == []
    with engine.begin() as conn:
        insert_many(conn, SEQUENCES, [{"name": "A", "value": 1}])
    assert _names(engine) == ["A"]


def test_a_duplicate_key_raises_integrity_error_and_the_transaction_can_roll_back(engine):
    with engine.begin() as conn:
        insert_many(conn, SEQUENCES, [{"name": "A", "value": 1}])
    with pytest.raises(IntegrityError), engine.begin() as conn:
        insert_many(conn, SEQUENCES, [{"name": "B", "value": 1}, {"name": "A", "value": 2}])
    assert _names(engine) == ["A"]  # B went with the rolled-back transaction


def test_a_connection_without_a_transaction_gets_one(engine):
    with engine.connect() as conn:
        assert not conn.in_transaction()
        changed = execute_many(conn, SEQUENCES.insert(), [{"name": "C", "value": 3}])
        assert conn.in_transaction()
        if conn.dialect.name == "sqlite":  # psycopg's executemany of an INSERT counts -1
            assert changed == 1
        conn.commit()
    assert _names(engine) == ["C"]


def test_the_count_of_changed_rows(engine):
    with engine.begin() as conn:
        insert_many(conn, SEQUENCES, [{"name": f"N{i}", "value": i} for i in range(5)])
        statement = (
            SEQUENCES.update()
            .where(SEQUENCES.c.name == bindparam("n"))
            .values(value=SEQUENCES.c.value + 10)
        )
        assert execute_many(conn, statement, [{"n": "N1"}, {"n": "N3"}, {"n": "missing"}]) == 2
