"""Readable record numbers for people: ``SO20261125000123`` (prefix, business date, counter).

One counter row per prefix and business date, incremented with an upsert in the caller's
transaction, so numbers are gap-free per day on commit and unique on both databases.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Connection, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.clock import business_date
from teleserve.core.db import Base, table_of


class RecordSequence(Base):
    __tablename__ = "record_sequence"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


def next_value(conn: Connection, name: str) -> int:
    table = table_of(RecordSequence)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(table)
        .values(name=name, value=1)
        .on_conflict_do_update(index_elements=[table.c.name], set_={"value": table.c.value + 1})
        .returning(table.c.value)
    )
    return int(conn.execute(statement).scalar_one())


def next_number(conn: Connection, prefix: str, *, tz: str = "Asia/Shanghai", width: int = 6) -> str:
    """The next readable number for ``prefix`` today, e.g. ``SO20261125000123``."""
    day = business_date(tz=tz).strftime("%Y%m%d")
    return f"{prefix}{day}{next_value(conn, prefix + day):0{width}d}"
