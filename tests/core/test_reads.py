"""``core.reads.fetch``: the rows ``conn.execute`` gives, by attribute and position, on both
databases (SQLite takes the driver's cursor, PostgreSQL SQLAlchemy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, literal_column, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from teleserve.core.db import in_parameter, table_of
from teleserve.core.outbox import OutboxMessage
from teleserve.core.reads import fetch
from teleserve.core.sequences import RecordSequence

OUTBOX = table_of(OutboxMessage)
COUNTERS = table_of(RecordSequence)
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)

# Built once, as the hot paths build theirs: an IN list, a literal, JSON and times back.
BY_IDS = {
    dialect: select(OUTBOX.c.id, OUTBOX.c.payload, OUTBOX.c.created_at, OUTBOX.c.done_at)
    .where(
        in_parameter(OUTBOX.c.id, "ids", dialect),
        OUTBOX.c.status != literal_column("'dead'"),
        OUTBOX.c.attempts < bindparam("most", 3),
    )
    .order_by(OUTBOX.c.id)
    for dialect in ("sqlite", "postgresql")
}
ADVANCE = (
    sqlite.insert(COUNTERS)
    .values(name="C", value=bindparam("n"))
    .on_conflict_do_update(
        index_elements=[COUNTERS.c.name], set_={"value": COUNTERS.c.value + bindparam("n")}
    )
    .returning(COUNTERS.c.value)
)
INSERT_RETURNING = COUNTERS.insert().returning(COUNTERS.c.name)


@pytest.fixture
def messages(engine):
    rows = [
        {
            "id": f"M{n}",
            "topic": "t",
            "key": None,
            "payload": {"n": n, "名": "张三", "list": [1, 2]},
            "status": "dead" if n == 3 else "pending",
            "attempts": n,
            "available_at": T0,
            "locked_until": None,
            "last_error": None,
            "created_at": T0 + timedelta(seconds=n),
            "done_at": None if n % 2 else T0,
        }
        for n in range(6)
    ]
    with engine.begin() as conn:
        conn.execute(OUTBOX.insert(), rows)
    return rows


@pytest.mark.parametrize("ids", [["M0"], ["M2", "M0", "M9", "M0"], [f"M{n}" for n in range(6)], []])
def test_the_rows_of_conn_execute(engine, messages, ids):
    with engine.connect() as conn:
        statement = BY_IDS[conn.dialect.name]
        expected = conn.execute(statement, {"ids": ids}).all()
        conn.rollback()
        for in_transaction in (True, False):
            if in_transaction:
                conn.begin()
            rows = fetch(conn, statement, {"ids": ids})
            assert [tuple(r) for r in rows] == [tuple(r) for r in expected]
            assert [(r.id, r.payload, r.created_at, r.done_at) for r in rows] == [
                (r.id, r.payload, r.created_at, r.done_at) for r in expected
            ]
            conn.rollback()
    wanted = {"M0", "M1", "M2"} & set(ids)  # M3 is dead, M4 and M5 have tried too often
    assert {r.id for r in expected} == wanted
    for row in expected:
        assert row.payload["名"] == "张三" and row.created_at.tzinfo is not None


def test_a_parameter_the_statement_binds_itself_can_be_given(engine, messages):
    with engine.begin() as conn:
        rows = fetch(conn, BY_IDS[conn.dialect.name], {"ids": ["M4", "M5"], "most": 10})
    assert [r.id for r in rows] == ["M4", "M5"]


def test_returning_and_one_parameter_in_two_places(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("the upsert is SQLite's (PostgreSQL's receipt serials use a SEQUENCE)")
    with engine.begin() as conn:
        assert fetch(conn, ADVANCE, {"n": 5}) == [(5,)]
        [(value,)] = fetch(conn, ADVANCE, {"n": 3})
        assert value == 8


def test_errors_are_raised_as_sqlalchemy_raises_them(engine):
    with engine.begin() as conn:
        assert [r.name for r in fetch(conn, INSERT_RETURNING, {"name": "A", "value": 1})] == ["A"]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        fetch(conn, INSERT_RETURNING, {"name": "A", "value": 2})
