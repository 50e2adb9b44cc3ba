"""``core.db.in_list`` / ``in_parameter``: the rows of ``IN (...)`` on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from teleserve.core.db import in_list, in_parameter, table_of
from teleserve.core.sequences import RecordSequence

SEQUENCES = table_of(RecordSequence)


@pytest.fixture
def names(engine):
    with engine.begin() as conn:
        conn.execute(SEQUENCES.insert(), [{"name": f"N{i:03d}", "value": i} for i in range(30)])
    return [f"N{i:03d}" for i in range(30)]


@pytest.mark.parametrize(
    "wanted",
    [[], ["N003"], ["N001", "N029", "N017", "missing", "N001"], [f"N{i:03d}" for i in range(30)]],
)
def test_in_list_finds_what_in_finds(engine, names, wanted):
    column = SEQUENCES.c.name
    with engine.connect() as conn:
        dialect = conn.dialect.name
        expected = set(conn.execute(select(column).where(column.in_(wanted))).scalars())
        assert expected == set(wanted) & set(names)
        found = conn.execute(select(column).where(in_list(column, wanted, dialect)))
        assert set(found.scalars()) == expected
        statement = select(column).where(in_parameter(column, "wanted", dialect))
        assert set(conn.execute(statement, {"wanted": wanted}).scalars()) == expected


def test_a_value_longer_than_the_column_does_not_match_its_prefix(engine):
    stored = "N" * 40  # record_sequence.name is VARCHAR(40)
    with engine.begin() as conn:
        conn.execute(SEQUENCES.insert(), [{"name": stored, "value": 1}])
    column = SEQUENCES.c.name
    with engine.connect() as conn:
        dialect = conn.dialect.name
        for wanted in ([stored + "X"], [stored]):
            found = conn.execute(select(column).where(in_list(column, wanted, dialect)))
            assert list(found.scalars()) == ([stored] if wanted == [stored] else [])
            statement = select(column).where(in_parameter(column, "wanted", dialect))
            rows = conn.execute(statement, {"wanted": wanted}).scalars()
            assert list(rows) == ([stored] if wanted == [stored] else [])
