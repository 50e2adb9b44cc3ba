"""Sync vs async SQLAlchemy against the raw drivers, on SQLite and PostgreSQL.

DESIGN.md sections 4 and 12 ask for the choice between sync and async SQLAlchemy to be
made by measurement. This script measures, on a small realistic ``payment`` table:

* one-row-insert commits/s (one transaction per payment, the unbatched path);
* rows/s at 50 rows per commit (the batched hot path);
* primary-key reads/s (a back-office GET: open a read-only transaction, load one row by
  id, give the connection back), with 1 client and with 16 concurrent clients (threads
  for the sync paths, asyncio tasks for the async ones).

Each figure is measured for the raw driver (sqlite3 / psycopg: the machine's limit),
SQLAlchemy Core and ORM sync, and Core and ORM async (aiosqlite / psycopg async, plus
asyncpg on PostgreSQL when it is installed), as the best of a few slices taken
round-robin across the paths, so a burst of outside load on this shared machine hits
every path alike. Every path does the same useful work per operation: the same round
trips per transaction, JSON encoded and decoded, timestamps returned timezone-aware.
The sync SQLAlchemy paths use the project's own ``teleserve.core.db.make_engine`` (WAL,
``synchronous=FULL``, ``BEGIN IMMEDIATE`` for writers on SQLite; ``pool_pre_ping`` on
PostgreSQL); the async engines mirror that configuration.

Usage::

    .venv/bin/python bench/db_access_bench.py \\
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] \\
        [--seconds 2.4] [--rounds 3]

SQLite runs in a file in a fresh temporary directory; PostgreSQL in a scratch database
created next to the one named by ``--pg-url`` and dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

import psycopg
from psycopg.types.json import Json
from rich.console import Console
from rich.table import Table
from sqlalchemy import (
    JSON,
    URL,
    BigInteger,
    Engine,
    String,
    create_engine,
    event,
    insert,
    make_url,
    select,
)
from sqlalchemy import Table as CoreTable
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from teleserve.core.clock import clock
from teleserve.core.db import UTCDateTime, make_engine
from teleserve.core.ids import new_id

Row = dict[str, Any]

SEED_ROWS = 20_000  # rows present before any read is measured
ACCOUNTS = [new_id() for _ in range(1_000)]
CONCURRENT_CLIENTS = 16
POOL_SIZE = 16  # PostgreSQL pools: one connection per concurrent client


# --------------------------------------------------------------------------- the table
class BenchBase(DeclarativeBase):
    # Same column types as teleserve.core.db.Base, but a separate MetaData so the bench
    # creates only its own table.
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Payment(BenchBase):
    __tablename__ = "bench_payment"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    detail: Mapped[dict[str, Any]]


PAYMENT = cast(CoreTable, Payment.__table__)
COLUMNS = "id, account_id, amount, status, created_at, detail"
INSERT_QMARK = f"INSERT INTO bench_payment ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
INSERT_PYFORMAT = f"INSERT INTO bench_payment ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s)"
INSERT_DOLLAR = f"INSERT INTO bench_payment ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
SELECT_QMARK = f"SELECT {COLUMNS} FROM bench_payment WHERE id = ?"
SELECT_PYFORMAT = f"SELECT {COLUMNS} FROM bench_payment WHERE id = %s"
SELECT_DOLLAR = f"SELECT {COLUMNS} FROM bench_payment WHERE id = $1"


def json_dumps(value: Any) -> str:
    # Identical to the project's serializer (compact, UTF-8, sorted keys).
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def make_row() -> Row:
    return {
        "id": new_id(),
        "account_id": random.choice(ACCOUNTS),
        "amount": random.randint(100, 50_000),
        "status": "succeeded",
        "created_at": clock.now(),
        "detail": {"channel": "kiosk", "terminal": "K-0012", "method": "cash", "note": "话费充值"},
    }


def sqlite_timestamp(value: datetime) -> str:
    # The text SQLAlchemy's SQLite DateTime writes, so raw and ORM rows are interchangeable.
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


# ------------------------------------------------------------------------ access paths
class SyncAccess(Protocol):
    def insert(self, rows: list[Row]) -> None: ...
    def read(self, payment_id: str) -> None: ...
    def close(self) -> None: ...


class AsyncAccess(Protocol):
    async def insert(self, rows: list[Row]) -> None: ...
    async def read(self, payment_id: str) -> None: ...
    async def close(self) -> None: ...


SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=30000",
)


class RawSqlite:
    """stdlib sqlite3 with the same pragmas and transaction shape as the project engine."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for pragma in SQLITE_PRAGMAS:
            self.conn.execute(pragma)

    def insert(self, rows: list[Row]) -> None:
        params = [
            (
                r["id"],
                r["account_id"],
                r["amount"],
                r["status"],
                sqlite_timestamp(r["created_at"]),
                json_dumps(r["detail"]),
            )
            for r in rows
        ]
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            if len(params) == 1:
                self.conn.execute(INSERT_QMARK, params[0])
            else:
                self.conn.executemany(INSERT_QMARK, params)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def read(self, payment_id: str) -> None:
        self.conn.execute("BEGIN")
        try:
            row = self.conn.execute(SELECT_QMARK, (payment_id,)).fetchone()
        finally:
            self.conn.execute("ROLLBACK")
        json.loads(row[5])
        datetime.fromisoformat(row[4]).replace(tzinfo=UTC)

    def close(self) -> None:
        self.conn.close()


class RawPsycopg:
    """psycopg 3, one connection per client, one transaction per operation."""

    def __init__(self, conninfo: str) -> None:
        self.conn = psycopg.connect(conninfo)

    def insert(self, rows: list[Row]) -> None:
        params = [
            (
                r["id"],
                r["account_id"],
                r["amount"],
                r["status"],
                r["created_at"],
                Json(r["detail"], dumps=json_dumps),
            )
            for r in rows
        ]
        with self.conn.transaction(), self.conn.cursor() as cur:
            if len(params) == 1:
                cur.execute(INSERT_PYFORMAT, params[0])
            else:
                cur.executemany(INSERT_PYFORMAT, params)

    def read(self, payment_id: str) -> None:
        with self.conn.transaction(force_rollback=True):
            row = self.conn.execute(SELECT_PYFORMAT, (payment_id,)).fetchone()
        assert row is not None  # psycopg already decoded the JSON and the timestamptz

    def close(self) -> None:
        self.conn.close()


class CoreSync:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = engine.execution_options(readonly=True)  # plain BEGIN on SQLite

    def insert(self, rows: list[Row]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(PAYMENT), rows[0] if len(rows) == 1 else rows)

    def read(self, payment_id: str) -> None:
        with self.reader.connect() as conn:
            conn.execute(select(PAYMENT).where(PAYMENT.c.id == payment_id)).one()

    def close(self) -> None:
        pass  # the engine owns the connections


class OrmSync:
    """The back office's shape: a session per request, as teleserve.core.uow does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = engine.execution_options(readonly=True)

    def insert(self, rows: list[Row]) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            session.add_all([Payment(**r) for r in rows])
            session.commit()

    def read(self, payment_id: str) -> None:
        with Session(self.reader, expire_on_commit=False) as session:
            assert session.get(Payment, payment_id) is not None

    def close(self) -> None:
        pass  # the engine owns the connections


class CoreAsync:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.reader = engine.execution_options(readonly=True)

    async def insert(self, rows: list[Row]) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(PAYMENT), rows[0] if len(rows) == 1 else rows)

    async def read(self, payment_id: str) -> None:
        async with self.reader.connect() as conn:
            (await conn.execute(select(PAYMENT).where(PAYMENT.c.id == payment_id))).one()

    async def close(self) -> None:
        pass  # the engine owns the connections


class OrmAsync:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.reader = engine.execution_options(readonly=True)

    async def insert(self, rows: list[Row]) -> None:
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            session.add_all([Payment(**r) for r in rows])
            await session.commit()

    async def read(self, payment_id: str) -> None:
        async with AsyncSession(self.reader, expire_on_commit=False) as session:
            assert await session.get(Payment, payment_id) is not None

    async def close(self) -> None:
        pass  # the engine owns the connections


class RawAsyncpg:
    """asyncpg, for comparison: the async driver's own limit."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, dsn: str) -> RawAsyncpg:
        import asyncpg  # type: ignore[import-untyped]  # optional, no type stubs

        return cls(await asyncpg.connect(dsn))

    async def insert(self, rows: list[Row]) -> None:
        params = [
            (
                r["id"],
                r["account_id"],
                r["amount"],
                r["status"],
                r["created_at"],
                json_dumps(r["detail"]),
            )
            for r in rows
        ]
        async with self.conn.transaction():
            if len(params) == 1:
                await self.conn.execute(INSERT_DOLLAR, *params[0])
            else:
                await self.conn.executemany(INSERT_DOLLAR, params)

    async def read(self, payment_id: str) -> None:
        transaction = self.conn.transaction()
        await transaction.start()
        try:
            row = await self.conn.fetchrow(SELECT_DOLLAR, payment_id)
        finally:
            await transaction.rollback()
        json.loads(row["detail"])

    async def close(self) -> None:
        await self.conn.close()


# --------------------------------------------------------------------------- engines
def async_sqlite_engine(url: str) -> AsyncEngine:
    """aiosqlite configured like teleserve.core.db.make_engine configures sqlite3."""
    engine = create_async_engine(url, json_serializer=json_dumps, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        readonly = conn.get_execution_options().get("readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

    return engine


def async_pg_engine(url: str) -> AsyncEngine:
    # The same pool settings make_engine gives the sync PostgreSQL engine.
    return create_async_engine(
        url,
        json_serializer=json_dumps,
        pool_size=POOL_SIZE,
        max_overflow=POOL_SIZE,
        pool_pre_ping=True,
    )


def pg_engine_without_pre_ping(url: str) -> Engine:
    # Diagnostic only: make_engine's PostgreSQL engine minus pool_pre_ping, to show what
    # the ping round trip on every connection checkout costs.
    return create_engine(
        url, json_serializer=json_dumps, pool_size=POOL_SIZE, max_overflow=POOL_SIZE
    )


# ------------------------------------------------------------------------------ paths
@dataclass
class SyncPath:
    """A way of reaching the database from threads; ``client()`` is called per thread."""

    name: str
    open_client: Callable[[Engine | None], SyncAccess]
    engine_factory: Callable[[], Engine | None] = lambda: None
    engine: Engine | None = None
    clients: list[SyncAccess] = field(default_factory=list)

    def start(self) -> None:
        self.engine = self.engine_factory()

    def client(self) -> SyncAccess:
        access = self.open_client(self.engine)
        self.clients.append(access)
        return access

    def stop(self) -> None:
        for access in self.clients:
            access.close()
        self.clients.clear()
        if self.engine is not None:
            self.engine.dispose()
        self.engine = None


@dataclass
class AsyncPath:
    """A way of reaching the database from asyncio tasks (engines live in one loop)."""

    name: str
    engine_factory: Callable[[], AsyncEngine | None]
    open_client: Callable[[AsyncEngine | None], Awaitable[AsyncAccess]]
    engine: AsyncEngine | None = None
    clients: list[AsyncAccess] = field(default_factory=list)

    async def start(self) -> None:
        self.engine = self.engine_factory()

    async def client(self) -> AsyncAccess:
        access = await self.open_client(self.engine)
        self.clients.append(access)
        return access

    async def stop(self) -> None:
        for access in self.clients:
            await access.close()
        self.clients.clear()
        if self.engine is not None:
            await self.engine.dispose()
        self.engine = None


# -------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    batch: int  # rows per commit; 0 for a read
    clients: int


WORKLOADS = (
    Workload("insert1", "1-row commits/s", 1, 1),
    Workload("insert50", "rows/s, 50/commit", 50, 1),
    Workload("read1", "PK reads/s, 1 client", 0, 1),
    Workload("read16", f"PK reads/s, {CONCURRENT_CLIENTS} clients", 0, CONCURRENT_CLIENTS),
)


def sync_loop(
    access: SyncAccess, work: Workload, seconds: float, ids: Sequence[str]
) -> tuple[int, float]:
    """Run ``work`` for ``seconds``; return (units done, seconds elapsed)."""
    units = 0
    start = time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        if work.batch:
            access.insert([make_row() for _ in range(work.batch)])
            units += work.batch
        else:
            access.read(random.choice(ids))
            units += 1
    return units, now - start


def sync_round(
    accesses: list[SyncAccess], work: Workload, seconds: float, ids: Sequence[str]
) -> float:
    if len(accesses) == 1:
        units, elapsed = sync_loop(accesses[0], work, seconds, ids)
        return units / elapsed
    barrier = threading.Barrier(len(accesses))

    def run(access: SyncAccess) -> tuple[int, float]:
        barrier.wait()  # all threads start together
        return sync_loop(access, work, seconds, ids)

    with ThreadPoolExecutor(len(accesses)) as pool:
        results = list(pool.map(run, accesses))
    return sum(u for u, _ in results) / max(e for _, e in results)


async def async_loop(
    access: AsyncAccess, work: Workload, seconds: float, ids: Sequence[str]
) -> tuple[int, float]:
    units = 0
    start = time.perf_counter()
    deadline = start + seconds
    while (now := time.perf_counter()) < deadline:
        if work.batch:
            await access.insert([make_row() for _ in range(work.batch)])
            units += work.batch
        else:
            await access.read(random.choice(ids))
            units += 1
    return units, now - start


async def async_round(
    accesses: list[AsyncAccess], work: Workload, seconds: float, ids: Sequence[str]
) -> float:
    results = await asyncio.gather(*(async_loop(a, work, seconds, ids) for a in accesses))
    return sum(u for u, _ in results) / max(e for _, e in results)


def measure_sync(
    path: SyncPath, work: Workload, seconds: float, warmup: float, ids: Sequence[str]
) -> float:
    path.start()
    try:
        accesses = [path.client() for _ in range(work.clients)]
        sync_round(accesses, work, warmup, ids)  # fills pools and statement caches
        return sync_round(accesses, work, seconds, ids)
    finally:
        path.stop()


async def measure_async(
    path: AsyncPath, work: Workload, seconds: float, warmup: float, ids: Sequence[str]
) -> float:
    await path.start()
    try:
        accesses = [await path.client() for _ in range(work.clients)]
        await async_round(accesses, work, warmup, ids)
        return await async_round(accesses, work, seconds, ids)
    finally:
        await path.stop()


# ---------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One database under test and the access paths to it; the first path is the limit."""

    title: str
    sync_paths: list[SyncPath]
    async_paths: list[AsyncPath]
    workloads: tuple[Workload, ...]
    between_cells: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)


def sqlite_target(db_file: Path) -> Target:
    url = f"sqlite:///{db_file}"
    aurl = f"sqlite+aiosqlite:///{db_file}"

    def checkpoint() -> None:
        # Each cell starts from an empty WAL, so earlier cells do not slow later ones.
        with sqlite3.connect(db_file) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()

    return Target(
        title="SQLite (file, WAL, synchronous=FULL)",
        sync_paths=[
            SyncPath("raw sqlite3", lambda _e: RawSqlite(db_file)),
            SyncPath("Core sync", _core_sync, lambda: make_engine(url)),
            SyncPath("ORM sync", _orm_sync, lambda: make_engine(url)),
        ],
        async_paths=[
            AsyncPath("Core async (aiosqlite)", lambda: async_sqlite_engine(aurl), _core_async),
            AsyncPath("ORM async (aiosqlite)", lambda: async_sqlite_engine(aurl), _orm_async),
        ],
        workloads=WORKLOADS,
        between_cells=checkpoint,
        notes=[
            "16-client reads: the sync engine's default pool holds 15 connections and "
            "aiosqlite's the same, so one client waits its turn on both."
        ],
    )


def _core_sync(engine: Engine | None) -> SyncAccess:
    assert engine is not None
    return CoreSync(engine)


def _orm_sync(engine: Engine | None) -> SyncAccess:
    assert engine is not None
    return OrmSync(engine)


async def _core_async(engine: AsyncEngine | None) -> AsyncAccess:
    assert engine is not None
    return CoreAsync(engine)


async def _orm_async(engine: AsyncEngine | None) -> AsyncAccess:
    assert engine is not None
    return OrmAsync(engine)


def pg_target(url: URL, with_asyncpg: bool) -> Target:
    sync_url = url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    async_paths = [
        AsyncPath("Core async (psycopg)", lambda: async_pg_engine(sync_url), _core_async),
        AsyncPath("ORM async (psycopg)", lambda: async_pg_engine(sync_url), _orm_async),
    ]
    if with_asyncpg:
        apg_url = url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
        async_paths += [
            AsyncPath("raw asyncpg", lambda: None, lambda _e: RawAsyncpg.open(conninfo)),
            AsyncPath("Core async (asyncpg)", lambda: async_pg_engine(apg_url), _core_async),
            AsyncPath("ORM async (asyncpg)", lambda: async_pg_engine(apg_url), _orm_async),
        ]
    return Target(
        title="PostgreSQL (localhost TCP)",
        sync_paths=[
            SyncPath("raw psycopg", lambda _e: RawPsycopg(conninfo)),
            SyncPath("Core sync", _core_sync, lambda: make_engine(sync_url, pool_size=POOL_SIZE)),
            SyncPath("ORM sync", _orm_sync, lambda: make_engine(sync_url, pool_size=POOL_SIZE)),
            SyncPath(
                "Core sync, pool_pre_ping off",
                _core_sync,
                lambda: pg_engine_without_pre_ping(sync_url),
            ),
        ],
        async_paths=async_paths,
        workloads=WORKLOADS,
    )


def create_schema_and_seed(url: str) -> list[str]:
    engine = create_engine(url, json_serializer=json_dumps)
    try:
        BenchBase.metadata.create_all(engine)
        rows = [make_row() for _ in range(SEED_ROWS)]
        with engine.begin() as conn:
            for start in range(0, len(rows), 1_000):
                conn.execute(insert(PAYMENT), rows[start : start + 1_000])
        return [r["id"] for r in rows]
    finally:
        engine.dispose()


@contextmanager
def scratch_pg_database(url: URL) -> Iterator[URL]:
    """Create an empty database beside the one ``url`` names, and drop it afterwards."""
    name = f"dbbench_{os.getpid()}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------------- the runner
Results = dict[str, dict[str, float]]  # path name -> workload key -> units per second


@dataclass(frozen=True)
class Timing:
    seconds: float  # measured per figure, split over the rounds
    rounds: int
    warmup: float  # per round, not measured: fills pools and statement caches


def run_target(console: Console, target: Target, ids: list[str], timing: Timing) -> Results:
    """Measure every path on every workload.

    Each figure is split into ``timing.rounds`` slices taken round-robin across the paths
    and the best slice is kept: this machine is shared (PostgreSQL, other processes), and
    interleaving makes a burst of outside load hit every path alike instead of one.
    """
    results: Results = {}
    slice_seconds = timing.seconds / timing.rounds
    for work in target.workloads:
        for _ in range(timing.rounds):
            for sync_path in target.sync_paths:
                rate = measure_sync(sync_path, work, slice_seconds, timing.warmup, ids)
                keep_best(results, sync_path.name, work.key, rate)
                target.between_cells()
            for async_path in target.async_paths:
                measured = measure_async(async_path, work, slice_seconds, timing.warmup, ids)
                keep_best(results, async_path.name, work.key, asyncio.run(measured))
                target.between_cells()
        best = ", ".join(f"{name} {rates[work.key]:,.0f}" for name, rates in results.items())
        console.log(f"{target.title}, {work.title}: {best}")
    return results


def keep_best(results: Results, path: str, workload: str, rate: float) -> None:
    rates = results.setdefault(path, {})
    rates[workload] = max(rate, rates.get(workload, 0.0))


def results_table(target: Target, results: Results) -> Table:
    limit_name = target.sync_paths[0].name
    table = Table(title=f"{target.title} — % of {limit_name} in brackets", title_justify="left")
    table.add_column("Access path")
    for work in target.workloads:
        table.add_column(work.title, justify="right")
    limit = results[limit_name]
    for name, rates in results.items():
        cells = [
            f"{rates[w.key]:,.0f} ({rates[w.key] / limit[w.key]:.0%})" for w in target.workloads
        ]
        table.add_row(name, *cells, style="bold" if name == limit_name else None)
    return table


def markdown_table(target: Target, results: Results) -> str:
    limit_name = target.sync_paths[0].name
    limit = results[limit_name]
    head = ["Access path", *(w.title for w in target.workloads)]
    lines = [
        f"**{target.title}** (% of {limit_name} in brackets)",
        "",
        "| " + " | ".join(head) + " |",
        "|---" + "|---:" * len(target.workloads) + "|",
    ]
    for name, rates in results.items():
        cells = [
            f"{rates[w.key]:,.0f} ({rates[w.key] / limit[w.key]:.0%})" for w in target.workloads
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- machine context
def fsyncs_per_second(directory: Path, seconds: float = 0.5) -> float:
    """How many small write+fdatasync pairs the disk under ``directory`` takes per second:
    the ceiling for durable one-row commits on SQLite."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.pwrite(fd, os.urandom(4096), 0)
            os.fdatasync(fd)
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_note() -> str:
    load = os.getloadavg()[0]
    busy = load > 1.0  # other processes compete with the bench and the database for the CPU
    return f"load average {load:.2f}" + (" (machine busy: figures disturbed)" if busy else "")


def context_lines(workdir: Path, pg_conninfo: str | None) -> list[str]:
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; at start {load_note()}",
        f"Python {platform.python_version()}; SQLAlchemy {package_version('sqlalchemy')}, "
        f"psycopg {package_version('psycopg')}, aiosqlite {package_version('aiosqlite')}, "
        f"asyncpg {package_version('asyncpg')}, greenlet {package_version('greenlet')}; "
        f"SQLite library {sqlite3.sqlite_version}",
        f"Disk under {workdir}: {fsyncs_per_second(workdir):,.0f} write+fdatasync/s "
        "(ceiling for durable single-row SQLite commits)",
    ]
    if pg_conninfo is not None:
        with psycopg.connect(pg_conninfo) as conn:
            server = conn.execute("SHOW server_version").fetchone()
            settings = conn.execute(
                "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings"
                " WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method',"
                " 'commit_delay', 'shared_buffers')"
            ).fetchone()
        lines.append(
            f"PostgreSQL {server[0] if server else '?'} on the same machine: "
            f"{settings[0] if settings else '?'}"
        )
    lines.append(
        "The raw-driver rows are the limit: the driver doing the same work with no "
        "SQLAlchemy in between. Percentages are of that limit."
    )
    return lines


# ------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument(
        "--pg-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server; a scratch database is created next to this one",
    )
    parser.add_argument("--seconds", type=float, default=2.4, help="measured seconds per figure")
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved slices per figure (best one kept)"
    )
    parser.add_argument(
        "--only", choices=("sqlite", "postgresql"), help="measure one database only"
    )
    parser.add_argument(
        "--no-asyncpg", action="store_true", help="skip the asyncpg comparison rows"
    )
    parser.add_argument("--dir", type=Path, help="where the SQLite file goes (default: TMPDIR)")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown here")
    return parser.parse_args(argv)


def asyncpg_available() -> bool:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    timing = Timing(args.seconds, args.rounds, warmup=min(0.15, args.seconds / args.rounds / 4))
    started = time.perf_counter()
    tables: list[tuple[Target, Results]] = []
    pg_url = make_url(args.pg_url)

    with tempfile.TemporaryDirectory(prefix="dbbench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        pg_info = None
        if args.only != "sqlite":
            pg_info = pg_url.set(drivername="postgresql").render_as_string(hide_password=False)
        context = context_lines(workdir, pg_info)

        if args.only != "postgresql":
            db_file = workdir / "bench.db"
            ids = create_schema_and_seed(f"sqlite:///{db_file}")
            target = sqlite_target(db_file)
            tables.append((target, run_target(console, target, ids, timing)))

        if args.only != "sqlite":
            with scratch_pg_database(pg_url) as scratch:
                sync_url = scratch.set(drivername="postgresql+psycopg")
                ids = create_schema_and_seed(sync_url.render_as_string(hide_password=False))
                with_asyncpg = not args.no_asyncpg and asyncpg_available()
                target = pg_target(scratch, with_asyncpg)
                tables.append((target, run_target(console, target, ids, timing)))

    context.append(
        f"{timing.seconds:g} s measured per figure, as the best of {timing.rounds} "
        f"interleaved slices of {timing.seconds / timing.rounds:.2g} s (each after "
        f"{timing.warmup:g} s warm-up); total run "
        f"{time.perf_counter() - started:.0f} s; load average at end "
        f"{os.getloadavg()[0]:.2f} (includes the bench's own clients)"
    )
    console.print()
    for line in context:
        console.print(f"• {line}")
    for target, results in tables:
        console.print()
        console.print(results_table(target, results))
        for note in target.notes:
            console.print(f"  note: {note}")
    if args.markdown:
        text = "\n".join(f"- {line}" for line in context) + "\n\n"
        text += "\n".join(markdown_table(t, r) for t, r in tables)
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
