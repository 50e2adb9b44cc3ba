"""Database engine, declarative base and column types shared by every domain.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` (a committed
payment survives power loss) and foreign keys on. Writing transactions start with
``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of failing on a
lock upgrade; read-only units of work use a plain deferred ``BEGIN``.
PostgreSQL is reached through psycopg 3 (``postgresql+psycopg://``).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import repeat
from operator import is_, itemgetter
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import (
    ARRAY,
    JSON,
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored in UTC and always come back timezone-aware.

    PostgreSQL keeps ``timestamptz``; SQLite has no zone support, so the value is stored
    as naive UTC text and re-labelled UTC when read. Naive input is refused: it is always
    a bug (whose local time?).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not UTC:  # the common case (utcnow()) skips the conversion
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite: ``process_bind_param`` and the dialect's DATETIME formatting in one step.
        # Batches bind thousands of timestamps and the dialect's ``%``-formatting of a
        # dict per value was most of their cost; ``isoformat(" ", "microseconds")`` of
        # the naive UTC value is the same text ("2026-11-25 08:30:00.000000").
        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is not UTC:
                if value.tzinfo is None:
                    raise ValueError("naive datetime given to a UTC column")
                value = value.astimezone(UTC)
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Money and counters: 64-bit everywhere (BIGINT on PostgreSQL, INTEGER on SQLite).
Money = BigInteger().with_variant(BigInteger(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


# Compact, UTF-8 (Chinese stays readable in the database), stable key order; one encoder
# for every call (``json.dumps`` with options builds a new one each time).
_JSON_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _c_encoder() -> Callable[[Any], str]:
    """``_JSON_ENCODER.encode``, same text, for half the cost: ``encode`` builds its C
    encoder again on every call (a batch encodes thousands of small audit details and
    outbox payloads); this one is built once. It skips the check for circular
    structures, which then fail with ``RecursionError`` instead of ``ValueError``."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return _JSON_ENCODER.encode
    chunks = make(
        None,  # no markers: no circular check
        _JSON_ENCODER.default,
        json.encoder.encode_basestring,  # as ensure_ascii=False
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


json_text = _c_encoder()
"""Canonical JSON text of ``value``: compact, UTF-8, keys sorted (the audit log hashes it)."""


def _json_dumps(value: Any) -> str:
    return json_text(value)


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """An engine configured for ``url`` (SQLite file / memory or PostgreSQL)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=_json_dumps,
            connect_args={"check_same_thread": False, "timeout": 30},
        )
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url,
        echo=echo,
        json_serializer=_json_dumps,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; "begin" below issues BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Checkpoint every 10,000 WAL pages (40 MB), not SQLite's 1,000: a money batch
        # of 200 payments writes ~1,000-1,400 pages (random index leaves), so the default
        # checkpointed inside nearly every commit, copying each page to the database
        # file and fsyncing it. Pages written again by later batches (index leaves,
        # account rows, table tails) are now copied once per checkpoint. Measured in
        # BENCHMARKS.md ("Kiosk load", session 5).
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.close()

    database = engine.url.database
    lock = _writer_lock(database) if database and database != ":memory:" else None

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # BEGIN goes straight to the driver's cursor: ``exec_driver_sql`` built a whole
        # execution context for it, ~0.1 ms of every transaction (a tenth of a small
        # money batch's fixed cost, measured). Errors still come out as SQLAlchemy's.
        if conn.get_execution_options().get("readonly", False):
            _begin(conn, "BEGIN")
            return
        dbapi_connection = conn.connection.dbapi_connection
        if lock is not None and lock.acquire(timeout=_WRITER_LOCK_TIMEOUT_S):
            _LOCK_HOLDERS[id(dbapi_connection)] = lock
        try:
            _begin(conn, "BEGIN IMMEDIATE")
        except BaseException:
            _release_writer_lock(dbapi_connection)
            raise

    if lock is not None:
        # Released once the COMMIT or ROLLBACK has run (the "commit" event comes before
        # it), also when the pool rolls back a connection given back mid-transaction and
        # when a connection is closed: the dialect's own methods, wrapped.
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback", "do_close"):
            setattr(dialect, name, _releasing(getattr(dialect, name)))


def _begin(conn: Connection, sql: str) -> None:
    with driver_cursor(conn, sql, ()) as cursor:
        cursor.execute(sql)


# SQLite has one writer. The writers of one process (the money writer, the outbox worker,
# request threads) queue on a lock of their own before ``BEGIN IMMEDIATE``: SQLite's busy
# handler polls with sleeps of 1, 2, 5, 10 … ms, so a writer that found the database
# locked by a writer of its own process went on waiting for milliseconds after the lock
# was free — 7–11 ms per money batch beside the outbox worker, measured. Writers in other
# processes still meet the busy handler. The lock is per database file; waiting for it is
# bounded, after which the writer goes on to SQLite's busy timeout as before.
_WRITER_LOCKS: dict[str, threading.Lock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()
_LOCK_HOLDERS: dict[int, threading.Lock] = {}  # id(DBAPI connection) -> the lock it holds
_WRITER_LOCK_TIMEOUT_S = 30.0


def _writer_lock(database: str) -> threading.Lock:
    key = os.path.realpath(database)
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(key, threading.Lock())


def _release_writer_lock(connection: Any) -> None:
    # The dialect's methods get the pool's proxy of the DBAPI connection.
    dbapi_connection = getattr(connection, "dbapi_connection", connection)
    held = _LOCK_HOLDERS.pop(id(dbapi_connection), None)
    if held is not None:
        held.release()


def _releasing(method: Callable[[Any], None]) -> Callable[[Any], None]:
    def wrapped(dbapi_connection: Any) -> None:
        try:
            method(dbapi_connection)
        finally:
            _release_writer_lock(dbapi_connection)

    return wrapped


# Below this many rows a PostgreSQL batch is an INSERT rather than a COPY (a COPY costs
# a round trip of its own). SQLite batches of any size take ``execute_many``'s own path:
# its compiled statements are cached, so even one row skips SQLAlchemy's per-statement
# work (about 200 us a statement on the 2-core VM).
_COPY_MIN_ROWS = 16


_Plan = tuple[SQLCompiler, Sequence[str], list[Any]]
V = TypeVar("V")


class StatementCache(Generic[V]):
    """Values worked out once per statement object, looked up by its identity — a dict
    lookup, where SQLAlchemy's cache key costs ~15 us to build. Each entry holds its
    statement, so that identity stays its own. Meant for statements built once (module
    constants, ``PerDialect``, ``insert_statement``); one built per call only adds an
    entry, and the cache is emptied when full."""

    def __init__(self, limit: int = 512) -> None:
        self._entries: dict[int, tuple[Any, V]] = {}
        self._limit = limit
        self._guard = threading.Lock()

    def get(self, statement: Any, compute: Callable[[], V]) -> V:
        entry = self._entries.get(id(statement))
        if entry is not None and entry[0] is statement:
            return entry[1]
        value = compute()
        with self._guard:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            self._entries[id(statement)] = (statement, value)
        return value


# Compiled statements by (SQLAlchemy cache key, column keys, dialect): compiling an INSERT
# costs ~0.8 ms, more than a whole batch of the money path's rows on SQLite. The cache
# key is SQLAlchemy's own (the one its compiled cache uses); statements are our own,
# built from a handful of tables, so the dictionary stays small. In front of it, the
# same by the statement object (``StatementCache``) for the ones built once.
_COMPILED: dict[tuple[Any, tuple[str, ...], str], _Plan | None] = {}
_COMPILED_MAX = 512
_COMPILED_BY_STATEMENT: StatementCache[dict[tuple[tuple[str, ...], str], _Plan | None]]
_COMPILED_BY_STATEMENT = StatementCache()


def _compiled_for(statement: UpdateBase, dialect: Any, keys: list[str]) -> _Plan | None:
    """The statement compiled for these column keys with each position's bind
    processor, or ``None`` when it needs SQLAlchemy per row (see ``execute_many``)."""
    plans = _COMPILED_BY_STATEMENT.get(statement, dict)
    key = (tuple(keys), dialect.name)
    if key not in plans:
        plans[key] = _compiled_by_cache_key(statement, dialect, keys)
    return plans[key]


def _compiled_by_cache_key(statement: UpdateBase, dialect: Any, keys: list[str]) -> _Plan | None:
    cache_key = statement._generate_cache_key()
    key = (cache_key.key, tuple(keys), dialect.name) if cache_key is not None else None
    if key is not None and key in _COMPILED:
        return _COMPILED[key]
    compiled = statement.compile(dialect=dialect, column_keys=keys)
    positions = compiled.positiontup
    plan: _Plan | None = None
    if not (
        positions is None
        or not isinstance(compiled, SQLCompiler)
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.returning
        or compiled.escaped_bind_names
        or compiled.literal_execute_params
        or compiled.post_compile_params
    ):
        processors = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in positions
        ]
        plan = (compiled, positions, processors)
    if key is not None:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = plan
    return plan


def execute_many(conn: Connection, statement: UpdateBase, rows: Sequence[Mapping[str, Any]]) -> int:
    """``conn.execute(statement, rows).rowcount`` — an executemany of rows with the same
    keys — with less Python per row on SQLite; returns the number of rows changed.

    SQLAlchemy builds a parameter dict and runs every type's bind processor for every row
    and place: for the seed's batches that was a third of their time. Here the statement
    is compiled once, each column's values are processed together (a value every row
    shares — the batch's ``now``, a constant status — is processed once) and the driver
    gets plain tuples. Statements that need SQLAlchemy per row (Python-side column
    defaults, RETURNING, expanding or renamed parameters) and PostgreSQL (named
    parameters) take ``conn.execute``.
    """
    if not rows:
        return 0
    dialect = conn.dialect
    if not dialect.positional:
        return int(conn.execute(statement, rows).rowcount)
    keys = list(rows[0])
    plan = _compiled_for(statement, dialect, keys)
    if plan is None:
        return int(conn.execute(statement, rows).rowcount)
    compiled, positions, processors = plan
    from_rows = set(keys)
    if all(name in from_rows for name in positions) and not any(processors):
        # Plain values only (text, numbers): the driver's tuples straight from the rows.
        parameters = list(map(itemgetter(*positions), rows))
        if len(positions) == 1:
            parameters = [(value,) for value in parameters]
        return _executemany(conn, compiled.string, parameters)
    # Values the statement carries itself (``.values(...)``), for positions the rows do
    # not fill: SQLAlchemy's construct_params, only when there are such positions.
    fixed = (
        compiled.construct_params(dict(rows[0]))
        if any(name not in from_rows for name in positions)
        else {}
    )
    columns: list[list[Any]] = []
    for name, processor in zip(positions, processors, strict=True):
        if name in from_rows:
            values = list(map(itemgetter(name), rows))
        else:
            values = [fixed[name]] * len(rows)
        columns.append(values if processor is None else _processed(values, processor))
    return _executemany(conn, compiled.string, list(zip(*columns, strict=True)))


def _executemany(conn: Connection, sql: str, parameters: list[Any]) -> int:
    """The driver's ``executemany`` on the transaction's own SQLite connection; returns
    the rows changed. ``exec_driver_sql`` would cost ~100 us a statement of SQLAlchemy's
    execution context (events, result set-up) — as much as a small batch's rows; a money
    batch runs a dozen. Errors are raised as SQLAlchemy raises them (``IntegrityError``
    ...). A connection not in a transaction yet goes through SQLAlchemy, which begins it."""
    if not conn.in_transaction():
        return int(conn.exec_driver_sql(sql, parameters).rowcount)
    with driver_cursor(conn, sql, parameters) as cursor:
        cursor.executemany(sql, parameters)
        return int(cursor.rowcount)


class driver_cursor:  # noqa: N801 (used as a function: ``with driver_cursor(...) as c``)
    """A cursor of the transaction's own DBAPI connection (closed after) for running
    ``sql`` with ``parameters`` past SQLAlchemy's execution context; the driver's errors
    are raised as SQLAlchemy raises them (``IntegrityError`` ...).

    A class rather than ``@contextmanager``: a money batch opens ~20 of these, and the
    generator-based one cost 3.3 against 2.1 us a statement (``select 1`` included)."""

    __slots__ = ("_conn", "_cursor", "_parameters", "_sql")

    def __init__(self, conn: Connection, sql: str, parameters: Any) -> None:
        self._conn = conn
        self._sql = sql
        self._parameters = parameters

    def __enter__(self) -> Any:
        driver = self._conn.connection.driver_connection
        assert driver is not None
        self._cursor = driver.cursor()
        return self._cursor

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cursor.close()
        dbapi_error = self._conn.dialect.loaded_dbapi.Error
        if exc is not None and isinstance(exc, dbapi_error):
            raise DBAPIError.instance(self._sql, self._parameters, exc, dbapi_error) from exc


def insert_or_nothing_from_arrays(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    returning: Sequence[str],
) -> list[Any]:
    """PostgreSQL: ``INSERT .. ON CONFLICT DO NOTHING RETURNING returning`` of a batch of
    rows with the same keys, in ONE statement whose text does not depend on the number of
    rows: ``INSERT .. SELECT .. FROM unnest(arrays) WITH ORDINALITY ORDER BY n``.

    A multi-row VALUES list (what SQLAlchemy sends for an insert with RETURNING) is new
    text for every batch size, which psycopg parses again every time: ~12 ms of client CPU
    for 200 idempotency keys, measured; COPY cannot skip conflicts or return rows. Here
    each varying column is one array in psycopg's binary format, a column whose value is
    the same in every row (a batch's ``now``, a constant status, NULL) one parameter, each
    value through its type's bind processor as ``insert_many`` does. Rows go in in the order
    given, so callers that sort them keep one lock order. Returns the RETURNING rows."""
    dialect = conn.dialect
    if dialect.name != "postgresql":
        raise ValueError("insert_or_nothing_from_arrays is PostgreSQL's")
    if not rows:
        return []
    names = list(rows[0])
    params: dict[str, Any] = {}
    constant: list[bool] = []
    for n, name in enumerate(names):
        values = list(map(itemgetter(name), rows))
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            values = _processed(values, processor)
        constant.append(values.count(values[0]) == len(values))
        params[f"c{n}"] = values[0] if constant[-1] else values
    if all(constant):  # one row, say: unnest needs an array
        constant[0] = False
        params["c0"] = [params["c0"]] * len(rows)
    statement = _unnest_statement(dialect, table, tuple(names), tuple(constant), tuple(returning))
    return list(conn.exec_driver_sql(statement, params))


_UNNEST_STATEMENTS: dict[tuple[Any, ...], str] = {}


def _unnest_statement(
    dialect: Any,
    table: Table,
    names: tuple[str, ...],
    constant: tuple[bool, ...],
    returning: tuple[str, ...],
) -> str:
    key = (table.name, names, constant, returning)
    statement = _UNNEST_STATEMENTS.get(key)
    if statement is not None:
        return statement
    # Our own table and column names, never input: safe to quote into the statement.
    quote = dialect.identifier_preparer.quote
    arrays: list[str] = []
    selected: list[str] = []
    for n, name in enumerate(names):
        column_type = _array_element_type(table.c[name], dialect)
        if constant[n]:
            selected.append(f"CAST(%(c{n})s AS {column_type})")
        else:
            arrays.append(f"%(c{n})b::{column_type}[]")
            selected.append(f"v.c{n}")
    varying = [f"c{n}" for n in range(len(names)) if not constant[n]]
    statement = (
        f"INSERT INTO {quote(table.name)}"  # noqa: S608 (our own names, above)
        f" ({', '.join(quote(table.c[name].name) for name in names)})"
        f" SELECT {', '.join(selected)}"
        f" FROM unnest({', '.join(arrays)}) WITH ORDINALITY AS v({', '.join(varying)}, n)"
        " ORDER BY v.n ON CONFLICT DO NOTHING"
        f" RETURNING {', '.join(quote(table.c[name].name) for name in returning)}"
    )
    _UNNEST_STATEMENTS[key] = statement
    return statement


def _array_element_type(column: Any, dialect: Any) -> str:
    """The column's PostgreSQL type for an array of its values: ``_array_of``'s element,
    as SQL text."""
    element = _array_of(column).item_type
    return str(element.dialect_impl(dialect).compile(dialect=dialect))


@functools.cache
def insert_statement(table: Table) -> Insert:
    """``table.insert()``, built once per table (so ``execute_many`` finds it by identity)."""
    return table.insert()


_INSERT_OR_NOTHING: dict[tuple[str, str, tuple[str, ...] | None, str | None], Any] = {}


def insert_or_nothing(
    conn: Connection,
    table: Table,
    *,
    index_elements: Sequence[str] | None = None,
    returning: str | None = None,
) -> Any:
    """``INSERT .. ON CONFLICT [(index_elements)] DO NOTHING [RETURNING column]`` for the
    connection's dialect, built once per table, conflict target and dialect."""
    elements = tuple(index_elements) if index_elements is not None else None
    key = (table.name, conn.dialect.name, elements, returning)
    statement = _INSERT_OR_NOTHING.get(key)
    if statement is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = insert(table).on_conflict_do_nothing(index_elements=elements)
        if returning is not None:
            statement = statement.returning(table.c[returning])
        _INSERT_OR_NOTHING[key] = statement
    return statement


def insert_many(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``conn.execute(table.insert(), rows)`` for a batch of rows with the same keys, in
    the fewest round trips: ``execute_many`` on SQLite, ``COPY ... FROM STDIN`` on the
    transaction's own driver connection on PostgreSQL (psycopg's executemany sends one
    statement per row; COPY is the server's bulk path). A table column the rows leave
    out that has a Python-side default needs SQLAlchemy per row: ``conn.execute``."""
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name != "postgresql" or len(rows) < _COPY_MIN_ROWS:
        execute_many(conn, insert_statement(table), rows)
        return
    columns = list(rows[0])
    given = set(columns)
    if any(c.default is not None and c.key not in given for c in table.columns):
        conn.execute(table.insert(), rows)
        return
    values: list[list[Any]] = []
    for name in columns:
        column = list(map(itemgetter(name), rows))
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        values.append(column if processor is None else _processed(column, processor))
    # Our own table and column names, never input: safe to quote into the statement.
    quote = dialect.identifier_preparer.quote
    statement = "COPY {} ({}) FROM STDIN".format(
        quote(table.name), ", ".join(quote(table.c[name].name) for name in columns)
    )
    driver = conn.connection.driver_connection
    assert driver is not None
    dbapi_error = dialect.loaded_dbapi.Error
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in zip(*values, strict=True):
                copy.write_row(row)
    except dbapi_error as error:  # as conn.execute raises it (IntegrityError, ...)
        raise DBAPIError.instance(statement, None, error, dbapi_error) from error


def _processed(values: list[Any], processor: Callable[[Any], Any]) -> list[Any]:
    """``[processor(v) for v in values]``, with one call when every value is the same
    object (the batch's ``now``, a constant status; processors are pure functions of
    their value)."""
    first = values[0]
    if all(map(is_, values, repeat(first))):
        return [processor(first)] * len(values)
    return list(map(processor, values))


def in_list(column: ColumnElement[Any], values: Sequence[Any], dialect: str) -> ColumnElement[bool]:
    """``column IN (values)`` for a batch's lookup by many keys, as the dialect runs it best.

    On PostgreSQL it is ``column = ANY(:values)`` with one array parameter: an ``IN`` list
    is a parameter per value, which SQLAlchemy renders and psycopg parses and adapts
    again for every statement (each list length is a new statement), ~3.7 us of client
    CPU per value against ~1.1 us. The same rows for non-NULL values, and an empty list
    matches nothing either way. SQLite has no arrays: a plain ``IN``.

    The statement's text no longer depends on the number of values, so psycopg prepares
    it once it has run five times and PostgreSQL may then plan it generically: a
    condition beside it that a partial index needs (``status <> 'terminated'``) must be
    a constant in the SQL, not a bound parameter, for that plan to use the index."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(values), type_=_array_of(column)))
    return column.in_(values)


def in_parameter(column: ColumnElement[Any], name: str, dialect: str) -> ColumnElement[bool]:
    """``in_list`` for a statement built once: the values are bound as ``name``, a list
    (an expanding ``IN`` parameter on SQLite, an array on PostgreSQL)."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=_array_of(column)))
    return column.in_(bindparam(name, expanding=True))


T = TypeVar("T")


class PerDialect(Generic[T]):
    """A statement built once for each dialect, where the two differ (``in_parameter``):
    ``STATEMENT(conn)`` is the one for ``conn``."""

    def __init__(self, build: Callable[[str], T]) -> None:
        self._built = {dialect: build(dialect) for dialect in ("sqlite", "postgresql")}

    def __call__(self, conn: Connection) -> T:
        return self._built[conn.dialect.name]


def _array_of(column: ColumnElement[Any]) -> ARRAY[Any]:
    """The array type for values compared with ``column``. Strings without their length:
    a cast to ``VARCHAR(16)[]`` would cut a longer value to a stored one's prefix."""
    element = column.type
    return ARRAY(String() if isinstance(element, String) else element)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def read_engine(engine: Engine) -> Engine:
    """``engine`` for reads only: on SQLite its transactions take no write lock."""
    return engine.execution_options(readonly=True)


def table_of(model: type[Base]) -> Table:
    """The Core ``Table`` of a mapped class (typed, for Core statements on hot paths)."""
    return cast(Table, model.__table__)
