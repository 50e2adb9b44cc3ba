"""Demo seed: customers/s through the real ``teleserve.demo.seed.seed_database`` beside the
machine's own limits for the same kind of work, measured in the same run.

For each database (a fresh migrated SQLite file in a temporary directory; a scratch
PostgreSQL database created beside ``--pg-url`` and dropped at the end):

  * the demo seed with ``--customers`` customers, exactly as ``teleserve seed`` runs it
    (demo mode, every write through the owning domain's batch services, 2,000 customers
    per committed unit of work): customers/s over the customer phase
    (``SeedResult.customers_per_second``), total seconds, rows written per second, and
    this process's CPU time in the customer phase;
  * then ``payments.service.check_ledger`` (SYSTEM actor) and ``core.audit.verify`` must
    both be clean — the script exits non-zero otherwise;
  * the machine's limit for bulk inserts into a comparable wide table (12 columns: a
    32-character text key, two indexed text columns, Chinese text, money, two
    timestamps, JSON), 2,000 rows per commit: raw ``sqlite3`` ``executemany`` (WAL,
    ``synchronous=FULL``, ``BEGIN IMMEDIATE``) on SQLite; psycopg ``COPY`` and
    ``executemany`` on PostgreSQL.

Usage::

    .venv/bin/python bench/seed_bench.py [--customers 10000]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--only sqlite|postgresql] [--seconds 3] [--profile]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import os
import platform
import pstats
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from bench_common import pg_database
from psycopg.types.json import Json
from rich.console import Console
from rich.table import Table
from sqlalchemy import Connection, Engine, inspect, text

from teleserve.core import audit, migrate
from teleserve.core.actor import SYSTEM
from teleserve.core.db import make_engine, read_engine
from teleserve.core.settings import Mode, Settings, get_settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.demo import seed
from teleserve.payments import service as payments

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RAW_BATCH = 2_000  # rows per commit, as the seed's customer batches
WARMUP_SECONDS = 0.5

# Wide enough for the tables when the output is piped to a file.
console = Console(width=None if sys.stdout.isatty() else 150)


# -- the seed, instrumented ------------------------------------------------------------


@dataclass
class SeedRun:
    database: str
    customers: int
    customers_per_second: float
    customer_seconds: float
    total_seconds: float
    customer_cpu_seconds: float
    # CPU of the helper process that makes the people (``demo.people.Prefetched``): its
    # whole life, start-up and the pool's ordinary numbers included, on the other core.
    helper_cpu_seconds: float
    rows_after_pool: dict[str, int]
    rows_after: dict[str, int]
    ledger_problems: list[str] = field(default_factory=list)
    audit_report: audit.VerifyReport | None = None
    check_seconds: float = 0.0

    @property
    def rows_total(self) -> int:
        return sum(self.rows_after.values())

    @property
    def rows_customer_phase(self) -> int:
        """Rows inserted by the customer phase (updates, e.g. of pool numbers, not counted)."""
        return sum(n - self.rows_after_pool.get(t, 0) for t, n in self.rows_after.items())

    def inserted_per_customer(self, table: str) -> float:
        inserted = self.rows_after.get(table, 0) - self.rows_after_pool.get(table, 0)
        return inserted / self.customers if self.customers else 0.0


def count_rows(conn: Connection) -> dict[str, int]:
    """Rows in every table of the database (identifiers come from the catalog)."""
    names = inspect(conn).get_table_names()
    quote = conn.dialect.identifier_preparer.quote
    return {
        name: int(conn.execute(text(f"SELECT count(*) FROM {quote(name)}")).scalar_one())
        for name in names
    }


class Probe:
    """Wraps the seed's phases: counts rows when the number pool is written (inside the
    pool's own transaction, before the customer timer starts) and adds up this process's
    CPU time spent in the customer batches."""

    def __init__(self) -> None:
        self.rows_after_pool: dict[str, int] = {}
        self.customer_cpu = 0.0
        self._saved: dict[str, Any] = {}

    def __enter__(self) -> Probe:
        number_pool: Callable[..., int] = seed._number_pool
        customer_batch: Callable[..., None] = seed._customer_batch

        def pool_then_count(uow: UnitOfWork, *args: Any) -> int:
            created = number_pool(uow, *args)
            uow.flush()
            self.rows_after_pool = count_rows(uow.connection)
            return created

        def timed_batch(*args: Any) -> None:
            started = time.process_time()
            try:
                customer_batch(*args)
            finally:
                self.customer_cpu += time.process_time() - started

        self._saved = {"_number_pool": number_pool, "_customer_batch": customer_batch}
        seed._number_pool = pool_then_count  # type: ignore[assignment]
        seed._customer_batch = timed_batch  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        for name, original in self._saved.items():
            setattr(seed, name, original)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_seed(database: str, engine: Engine, customers: int) -> SeedRun:
    helper_before = children_cpu()
    with Probe() as probe:
        result = seed.seed_database(engine, customers=customers, progress=False)
    helper_cpu = children_cpu() - helper_before
    with read_engine(engine).connect() as conn:
        rows_after = count_rows(conn)
    run = SeedRun(
        database=database,
        customers=result.customers,
        customers_per_second=result.customers_per_second,
        customer_seconds=result.customer_seconds,
        total_seconds=result.seconds,
        customer_cpu_seconds=probe.customer_cpu,
        helper_cpu_seconds=helper_cpu,
        rows_after_pool=probe.rows_after_pool,
        rows_after=rows_after,
    )
    started = time.perf_counter()
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        run.ledger_problems = payments.check_ledger(uow)
    settings = get_settings()
    run.audit_report = audit.verify(
        engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file
    )
    run.check_seconds = time.perf_counter() - started
    return run


def demo_settings(url: str, folder: Path) -> None:
    use_settings(
        Settings(
            mode=Mode.demo,
            database_url=url,
            audit_checkpoint_dir=folder / "audit-checkpoints",
            audit_signing_key_file=folder / "audit-signing.key",
            log_json=False,
        )
    )


# -- the machine's limits --------------------------------------------------------------

RAW_COLUMNS = (
    "id, customer_id, org_path, kind, status, name, address, amount, "
    "created_at, updated_at, detail, version"
)
RAW_INDEXES = (
    "CREATE INDEX ix_raw_wide_customer_id ON raw_wide (customer_id)",
    "CREATE INDEX ix_raw_wide_org_path ON raw_wide (org_path)",
)


def raw_ddl(dialect: str) -> str:
    stamp, document = ("TIMESTAMPTZ", "JSON") if dialect == "postgresql" else ("DATETIME", "JSON")
    return (
        "CREATE TABLE raw_wide (id VARCHAR(32) PRIMARY KEY, customer_id VARCHAR(32) NOT NULL, "
        "org_path VARCHAR(255) NOT NULL, kind VARCHAR(16) NOT NULL, "
        "status VARCHAR(16) NOT NULL, name VARCHAR(100) NOT NULL, address TEXT NOT NULL, "
        f"amount BIGINT NOT NULL, created_at {stamp} NOT NULL, updated_at {stamp} NOT NULL, "
        f"detail {document} NOT NULL, version INTEGER NOT NULL)"
    )


class RawRows:
    """Rows shaped like the seed's: unique keys, a customer id per row, a hall's org path,
    Chinese name and address, JSON detail. Building them costs ~1 µs a row, so the
    measured rate is the database's, not Python's."""

    def __init__(self, dialect: str) -> None:
        self._n = 0
        self._run = f"{os.getpid():08d}"
        self._pg = dialect == "postgresql"
        self._detail = json.dumps(
            {"channel": "counter", "note": "开户", "vas": ["VAS-CLIP"]},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    def batch(self, size: int) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC)
        stamp: Any = now if self._pg else now.replace(tzinfo=None).isoformat(sep=" ")
        first, self._n = self._n, self._n + size
        return [
            (
                f"{self._run}{n:024d}",
                f"C{n:031d}",
                f"/op/gd/sz/hall{n % 7}/",
                "individual",
                "active",
                "张伟明",
                "深圳市南山区科技园路123号5栋1201室",
                5000 + n % 100,
                stamp,
                stamp,
                self._detail,
                1,
            )
            for n in range(first, first + size)
        ]


@dataclass(frozen=True)
class Limit:
    measure: str
    rows_per_second: float
    cpu_us_per_row: float


def timed(seconds: float, step: Callable[[], int]) -> tuple[float, float]:
    """Run ``step`` (returns rows done) for a warm-up, then ``seconds``: (rows/s, CPU µs/row)."""
    deadline = time.perf_counter() + WARMUP_SECONDS
    while time.perf_counter() < deadline:
        step()
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        done += step()
    elapsed = time.perf_counter() - started
    return done / elapsed, 1e6 * (time.process_time() - cpu) / done


def sqlite_limit(path: Path, seconds: float) -> Limit:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute(raw_ddl("sqlite"))
        for ddl in RAW_INDEXES:
            conn.execute(ddl)
        rows = RawRows("sqlite")
        sql = f"INSERT INTO raw_wide ({RAW_COLUMNS}) VALUES ({', '.join('?' * 12)})"

        def step() -> int:
            batch = rows.batch(RAW_BATCH)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, batch)
            conn.execute("COMMIT")
            return RAW_BATCH

        rate, cpu = timed(seconds, step)
    finally:
        conn.close()
    return Limit(f"raw sqlite3 executemany, {RAW_BATCH:,} rows per commit", rate, cpu)


def pg_limits(conninfo: str, seconds: float) -> list[Limit]:
    """COPY, then executemany, of 2,000 rows per commit, each into a fresh ``raw_wide``."""
    with psycopg.connect(conninfo) as conn:
        limits = [
            pg_limit(conn, "COPY", pg_copy_step, seconds),
            pg_limit(conn, "executemany", pg_executemany_step, seconds),
        ]
        conn.execute("DROP TABLE raw_wide")
        conn.commit()
    return limits


PgStep = Callable[[psycopg.Connection[Any], RawRows], int]


def pg_limit(conn: psycopg.Connection[Any], label: str, step: PgStep, seconds: float) -> Limit:
    conn.execute("DROP TABLE IF EXISTS raw_wide")
    conn.execute(raw_ddl("postgresql"))
    for ddl in RAW_INDEXES:
        conn.execute(ddl)
    conn.commit()
    rows = RawRows("postgresql")
    rate, cpu = timed(seconds, lambda: step(conn, rows))
    return Limit(f"raw psycopg {label}, {RAW_BATCH:,} rows per commit", rate, cpu)


def pg_copy_step(conn: psycopg.Connection[Any], rows: RawRows) -> int:
    copy_sql = f"COPY raw_wide ({RAW_COLUMNS}) FROM STDIN"
    with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
        for row in rows.batch(RAW_BATCH):
            copy.write_row(row)
    conn.commit()
    return RAW_BATCH


PG_INSERT = f"INSERT INTO raw_wide ({RAW_COLUMNS}) VALUES ({', '.join(['%s'] * 12)})"


def pg_executemany_step(conn: psycopg.Connection[Any], rows: RawRows) -> int:
    # The detail is already JSON text: Json(..., dumps=str) sends it as json unchanged.
    batch = [(*row[:10], Json(row[10], dumps=str), row[11]) for row in rows.batch(RAW_BATCH)]
    with conn.cursor() as cursor:
        cursor.executemany(PG_INSERT, batch)
    conn.commit()
    return RAW_BATCH


# -- databases -------------------------------------------------------------------------


@dataclass
class Outcome:
    run: SeedRun
    limits: list[Limit]
    load_before: float
    load_after: float


def bench_sqlite(customers: int, seconds: float) -> Outcome:
    load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="seed-bench-"))
    try:
        url = f"sqlite:///{folder / 'seed.db'}"
        demo_settings(url, folder)
        migrate.upgrade(url)
        engine = make_engine(url)
        try:
            console.print(f"[bold]SQLite[/]: seeding {customers:,} customers…")
            run = run_seed("SQLite", engine, customers)
        finally:
            engine.dispose()
        console.print("[bold]SQLite[/]: raw sqlite3 limit…")
        limits = [sqlite_limit(folder / "raw.db", seconds)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Outcome(run, limits, load, os.getloadavg()[0])


def bench_pg(pg_url: str, customers: int, seconds: float) -> Outcome:
    load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="seed-bench-"))
    try:
        with pg_database(pg_url, f"seed_bench_{os.getpid()}") as (url, conninfo):
            demo_settings(url, folder)
            migrate.upgrade(url)
            engine = make_engine(url)
            try:
                console.print(f"[bold]PostgreSQL[/]: seeding {customers:,} customers…")
                run = run_seed("PostgreSQL", engine, customers)
            finally:
                engine.dispose()
            console.print("[bold]PostgreSQL[/]: raw COPY and executemany limits…")
            limits = pg_limits(conninfo, seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return Outcome(run, limits, load, os.getloadavg()[0])


def profile_seed(customers: int) -> None:
    """cProfile of the customer phase of one extra SQLite seed (a separate run: the
    profiler slows it down), grouped by where the time goes."""
    folder = Path(tempfile.mkdtemp(prefix="seed-bench-profile-"))
    profiler = cProfile.Profile()
    customer_batch: Callable[..., None] = seed._customer_batch

    def profiled_batch(*args: Any) -> None:
        profiler.enable()
        try:
            customer_batch(*args)
        finally:
            profiler.disable()

    try:
        url = f"sqlite:///{folder / 'seed.db'}"
        demo_settings(url, folder)
        migrate.upgrade(url)
        engine = make_engine(url)
        seed._customer_batch = profiled_batch  # type: ignore[assignment]
        try:
            seed.seed_database(engine, customers=customers, progress=False)
        finally:
            seed._customer_batch = customer_batch
            engine.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    stats = pstats.Stats(profiler)
    groups: collections.Counter[str] = collections.Counter()
    raw_stats: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in raw_stats.items():
        groups[_group(filename, name)] += own
    total = sum(groups.values())
    table = Table(
        title=f"Where the customer phase's time goes (SQLite, {customers:,} customers, "
        "cProfile own time)"
    )
    table.add_column("part")
    table.add_column("share", justify="right")
    for group, spent in groups.most_common(16):
        table.add_row(group, f"{100 * spent / total:.1f}%")
    console.print(table)
    stats.sort_stats("cumulative").print_stats(r"teleserve", 25)


def _group(filename: str, name: str) -> str:
    if "teleserve/core/" in filename:
        return "teleserve.core." + filename.rsplit("/", 1)[1].removesuffix(".py")
    if "teleserve/" in filename:
        domain = filename.split("teleserve/", 1)[1].split("/", 1)[0]
        return f"teleserve.{domain.removesuffix('.py')}"
    if "sqlalchemy/orm" in filename:
        return "SQLAlchemy ORM"
    if "sqlalchemy" in filename:
        return "SQLAlchemy Core/engine"
    if "pydantic" in filename:
        return "pydantic"
    if filename == "~":  # a built-in: name it by its module or type
        if "sqlite3." in name or "psycopg" in name:
            return "driver (SQLite C code, commit and fsync)"
        if " of '" in name:
            return f"built-in methods of {name.split(' of ', 1)[1].split(' ')[0]}"
        return f"built-in {name.removeprefix('<built-in method ').rstrip('>')}"
    if "psycopg" in filename:
        return "driver (psycopg)"
    return "stdlib " + filename.rsplit("/", 1)[-1].removesuffix(".py")


# -- output ----------------------------------------------------------------------------


def show(outcomes: list[Outcome]) -> None:
    table = Table(title=f"Demo seed on {platform.node()} ({os.cpu_count()} CPUs)")
    for column in ("database", "measure", "result", "unit", "client CPU"):
        table.add_column(column, justify="right" if column in ("result", "client CPU") else "left")
    for outcome in outcomes:
        run = outcome.run
        db = run.database
        cpu_per_customer = 1e6 * run.customer_cpu_seconds / run.customers
        table.add_row(
            db,
            f"seed: customer phase ({run.customers:,} customers)",
            f"{run.customers_per_second:,.0f}",
            "customers/s",
            f"{cpu_per_customer:,.0f} µs/customer "
            f"({100 * run.customer_cpu_seconds / run.customer_seconds:.0f}% of wall)"
            f" + helper {1e6 * run.helper_cpu_seconds / run.customers:,.0f} µs",
        )
        table.add_row(db, "seed: whole run", f"{run.total_seconds:,.2f}", "s", "")
        table.add_row(
            db,
            f"seed: rows inserted by the customer phase ({run.rows_customer_phase:,})",
            f"{run.rows_customer_phase / run.customer_seconds:,.0f}",
            "rows/s",
            f"{1e6 * run.customer_cpu_seconds / run.rows_customer_phase:,.1f} µs/row",
        )
        table.add_row(
            db,
            f"seed: rows in all tables after the run ({run.rows_total:,}) / whole run",
            f"{run.rows_total / run.total_seconds:,.0f}",
            "rows/s",
            "",
        )
        for limit in outcome.limits:
            table.add_row(
                db,
                limit.measure,
                f"{limit.rows_per_second:,.0f}",
                "rows/s",
                f"{limit.cpu_us_per_row:,.1f} µs/row",
            )
        table.add_row(
            db,
            "load average (1 min) before → after",
            "",
            "",
            f"{outcome.load_before:.2f} → {outcome.load_after:.2f}",
        )
    console.print(table)

    per = Table(title="Rows the customer phase inserted, per customer")
    per.add_column("table")
    for outcome in outcomes:
        per.add_column(outcome.run.database, justify="right")
    names = sorted({name for o in outcomes for name in o.run.rows_after})
    for name in names:
        shares = [o.run.inserted_per_customer(name) for o in outcomes]
        if max(shares) >= 0.01:  # leave out the handful of chain heads and sequences
            per.add_row(name, *(f"{share:.3f}" for share in shares))
    console.print(per)


def check(outcomes: list[Outcome]) -> bool:
    clean = True
    for outcome in outcomes:
        run = outcome.run
        report = run.audit_report
        assert report is not None
        if run.ledger_problems:
            clean = False
            console.print(f"[red bold]{run.database}: check_ledger FAILED[/]:")
            for problem in run.ledger_problems:
                console.print(f"  {problem}")
        else:
            console.print(f"[green]{run.database}: check_ledger clean[/]")
        if report.ok:
            console.print(
                f"[green]{run.database}: audit.verify clean[/]: {report.records:,} records "
                f"in {report.chains} chains (checks took {run.check_seconds:.1f} s)"
            )
        else:
            clean = False
            first = report.first_problem
            console.print(
                f"[red bold]{run.database}: audit.verify FAILED[/]: "
                f"{len(report.problems)} broken chains; first: {first.message if first else '?'}"
            )
    return clean


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument(
        "--pg-url", default=os.environ.get("TELESERVE_BENCH_PG_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="how long each raw limit is measured"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also cProfile the customer phase of one extra SQLite seed",
    )
    args = parser.parse_args()

    console.print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    outcomes = []
    if args.only in (None, "sqlite"):
        outcomes.append(bench_sqlite(args.customers, args.seconds))
    if args.only in (None, "postgresql"):
        outcomes.append(bench_pg(args.pg_url, args.customers, args.seconds))
    console.print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    show(outcomes)
    clean = check(outcomes)
    if args.profile:
        profile_seed(args.customers)
    if not clean:
        console.print("[red bold]the seed left an inconsistent ledger or audit log[/]")
        sys.exit(1)


if __name__ == "__main__":
    main()
