"""Ledger posting: payments/s through ``payments.service.record_payments`` beside the
machine's own limits, measured in the same run.

What is measured (each for ``--seconds``, after a short warm-up):

SQLite (a file in a fresh temporary directory, WAL, ``synchronous=FULL``, the project's
``make_engine``):
  * raw ``sqlite3``: one-row-insert commits/s and rows/s at 50 rows per commit, with the
    same pragmas and ``BEGIN IMMEDIATE`` — the machine's limit for this work;
  * ``record_payments`` with 1, 50 and 200 payments per commit.

PostgreSQL (a scratch database created beside ``--pg-url`` and dropped at the end):
  * raw psycopg, one connection: one-row-insert commits/s and rows/s at 50 rows per commit;
  * ``pgbench`` (TPC-B-like, scale 10, ``-c 32 -j 2 -T 15``) in its own scratch database:
    the server's transaction rate for small write transactions on this machine;
  * ``record_payments`` with 1, 50 and 200 payments per commit on one connection, and
    with ``--threads`` threads (and as many processes) each on its own connection, 50 per
    commit — PostgreSQL scales with connections, Python threads share one GIL.

Every payment is the real thing: validation, idempotency row, payment row, ledger transfer
and its two entries, the customer's balance row, an audit record (hash-chained) and an
outbox event, all in the caller's transaction. 10,000 customer ledger accounts are opened
first (timed too: it is the seed's path); 1% of the payments name an unknown account and
are held. At the end the ledger is checked (``check_ledger`` must find nothing).

Usage::

    .venv/bin/python bench/ledger_bench.py [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--seconds 5] [--threads 8] [--skip-pg] [--profile] [--markdown out.md]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import json
import multiprocessing
import os
import platform
import pstats
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from bench_common import pg_database
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, make_url, select

from teleserve.core.db import make_engine
from teleserve.core.ids import new_id
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.models import load_all
from teleserve.payments import service as payments
from teleserve.payments.models import payment_table
from teleserve.payments.schemas import CustomerAccountSpec, PaymentRequest

ACCOUNTS = 10_000
CASH_BOXES = 20
WARMUP_SECONDS = 0.5
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"

# Wide enough for the table when the output is piped to a file.
console = Console(width=None if sys.stdout.isatty() else 170)


@dataclass(frozen=True)
class Measured:
    """A rate, and this process's CPU time per unit (``None`` when the work ran in other
    processes). The CPU figure moves less than the rate when other work shares the
    machine."""

    rate: float
    cpu_us: float | None = None


@dataclass
class Figure:
    database: str
    measure: str
    value: Measured
    unit: str
    limited_by: str


# -- workload --------------------------------------------------------------------------


class Workload:
    """Unique, realistic kiosk cash payment requests (thread-safe key counter)."""

    def __init__(self, run: str) -> None:
        self.run = run
        self._counter = iter(range(1, 1 << 62))
        self._lock = threading.Lock()

    def request(self, rng: random.Random) -> PaymentRequest:
        with self._lock:
            n = next(self._counter)
        box = n % CASH_BOXES
        account = f"BA{rng.randrange(ACCOUNTS)}" if rng.random() >= 0.01 else f"GONE{n}"
        return PaymentRequest(
            idempotency_key=f"tsp:{self.run}:T{box}:{n}",
            channel="kiosk_cash",
            amount=rng.choice((1000, 2000, 5000, 10000, 3000, 4700)),
            billing_account_id=account,
            service_number=f"138{n % 100_000_000:08d}",
            source_id=f"BOX{box}",
            terminal_id=f"T{box}",
            terminal_serial=str(n),
            org_path=f"/op/gd/sz/hall{box % 5}/",
        )


def open_accounts(engine: Engine) -> Measured:
    """Open the 10,000 customer ledger accounts in one call."""
    specs = [
        CustomerAccountSpec(f"BA{i}", f"C{i}", f"/op/gd/sz/hall{i % 5}/") for i in range(ACCOUNTS)
    ]
    started, cpu = time.perf_counter(), time.process_time()
    with UnitOfWork(engine) as uow:
        payments.ensure_customer_accounts(uow, specs)
        uow.commit()
    elapsed = time.perf_counter() - started
    return Measured(ACCOUNTS / elapsed, 1e6 * (time.process_time() - cpu) / ACCOUNTS)


def timed(seconds: float, step: Callable[[], int]) -> Measured:
    """Run ``step`` (returns units done) for a warm-up, then ``seconds``."""
    deadline = time.perf_counter() + WARMUP_SECONDS
    while time.perf_counter() < deadline:
        step()
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - started < seconds:
        done += step()
    elapsed = time.perf_counter() - started
    return Measured(done / elapsed, 1e6 * (time.process_time() - cpu) / done)


def record_step(engine: Engine, workload: Workload, batch: int, rng: random.Random) -> int:
    requests = [workload.request(rng) for _ in range(batch)]
    with UnitOfWork(engine) as uow:
        outcomes = payments.record_payments(uow, requests)
        uow.commit()
    failed = [o for o in outcomes if not o.ok]
    if failed:
        raise RuntimeError(f"bench payment refused: {failed[0].error}")
    return batch


def record_rate(engine: Engine, workload: Workload, batch: int, seconds: float) -> Measured:
    rng = random.Random(batch)
    return timed(seconds, lambda: record_step(engine, workload, batch, rng))


def record_rate_threads(
    engine: Engine, workload: Workload, batch: int, seconds: float, threads: int
) -> Measured:
    """Payments/s with ``threads`` threads, each committing batches on its own connection."""
    totals = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(slot: int) -> None:
        rng = random.Random(slot)
        start.wait()
        while not stop.is_set():
            totals[slot] += record_step(engine, workload, batch, rng)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    time.sleep(WARMUP_SECONDS)
    before = sum(totals)
    began, cpu = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    done = sum(totals) - before
    elapsed, spent = time.perf_counter() - began, time.process_time() - cpu
    stop.set()
    for thread in pool:
        thread.join()
    return Measured(done / elapsed, 1e6 * spent / done)


def _process_worker(url: str, run: str, batch: int, seconds: float, slot: int, out: Any) -> None:
    use_settings(Settings(mode=Mode.demo, database_url=url))
    engine = make_engine(url, pool_size=1)
    workload = Workload(f"{run}p{slot}")
    rng = random.Random(1000 + slot)
    done = 0
    deadline = time.perf_counter() + WARMUP_SECONDS
    while time.perf_counter() < deadline:
        record_step(engine, workload, batch, rng)
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        done += record_step(engine, workload, batch, rng)
    engine.dispose()
    out.put(done / (time.perf_counter() - began))


def record_rate_processes(url: str, run: str, batch: int, seconds: float, count: int) -> Measured:
    """Payments/s with ``count`` processes (no shared GIL), each on its own connection."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    procs = [
        context.Process(target=_process_worker, args=(url, run, batch, seconds, i, results))
        for i in range(count)
    ]
    for proc in procs:
        proc.start()
    rates = [results.get(timeout=seconds * 4 + 120) for _ in procs]
    for proc in procs:
        proc.join()
    return Measured(float(sum(rates)))


def ledger_summary(engine: Engine) -> tuple[int, list[str]]:
    with UnitOfWork(engine) as uow:
        problems = payments.check_ledger(uow)
        count = uow.connection.execute(select(func.count()).select_from(payment_table)).scalar()
    return int(count or 0), problems


# -- raw limits ------------------------------------------------------------------------


RAW_DDL = (
    "CREATE TABLE raw_payment (id TEXT PRIMARY KEY, account_id TEXT NOT NULL, "
    "amount BIGINT NOT NULL, created_at TEXT NOT NULL, detail TEXT NOT NULL)"
)


def raw_row() -> tuple[str, str, int, str, str]:
    detail = json.dumps({"channel": "kiosk_cash", "terminal": "T1"}, separators=(",", ":"))
    return (
        new_id(),
        f"BA{random.randrange(ACCOUNTS)}",
        5000,
        datetime.now(UTC).isoformat(),
        detail,
    )


def sqlite_raw(path: Path, rows_per_commit: int, seconds: float) -> Measured:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    conn.execute(RAW_DDL)
    sql = "INSERT INTO raw_payment VALUES (?, ?, ?, ?, ?)"

    def step() -> int:
        rows = [raw_row() for _ in range(rows_per_commit)]
        conn.execute("BEGIN IMMEDIATE")
        if rows_per_commit == 1:
            conn.execute(sql, rows[0])
        else:
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
        return rows_per_commit

    try:
        return timed(seconds, step)
    finally:
        conn.close()


def pg_raw(conninfo: str, rows_per_commit: int, seconds: float) -> Measured:
    with psycopg.connect(conninfo) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_payment")
        conn.execute(RAW_DDL)
        conn.commit()
        sql = "INSERT INTO raw_payment VALUES (%s, %s, %s, %s, %s)"

        def step() -> int:
            rows = [raw_row() for _ in range(rows_per_commit)]
            with conn.cursor() as cursor:
                if rows_per_commit == 1:
                    cursor.execute(sql, rows[0])
                else:
                    cursor.executemany(sql, rows)
            conn.commit()
            return rows_per_commit

        return timed(seconds, step)


def pgbench(
    admin_conninfo: str, url_parts: dict[str, str], database: str, seconds: int = 15
) -> tuple[Measured, str]:
    """pgbench -i -s 10, then -c 32 -j 2 -T ``seconds``, in a scratch database; (tps, command)."""
    executable = shutil.which("pgbench")
    if executable is None:
        raise RuntimeError("pgbench is not on PATH")
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    env = {**os.environ}
    if url_parts.get("password"):
        env["PGPASSWORD"] = url_parts["password"]
    common = ["-h", url_parts["host"], "-p", url_parts["port"], "-U", url_parts["user"]]
    try:
        subprocess.run(
            [executable, "-i", "-s", "10", "-q", *common, database],
            check=True,
            env=env,
            capture_output=True,
            text=True,
        )
        run = [executable, "-c", "32", "-j", "2", "-T", str(seconds), *common, database]
        result = subprocess.run(run, check=True, env=env, capture_output=True, text=True)
    finally:
        with psycopg.connect(admin_conninfo, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    if match is None:
        raise RuntimeError(f"cannot read pgbench output:\n{result.stdout}")
    return Measured(float(match.group(1))), f"pgbench -c 32 -j 2 -T {seconds} (scale 10)"


# -- databases -------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[tuple[str, Path]]:
    folder = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    try:
        yield f"sqlite:///{folder / 'ledger.db'}", folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def prepare(url: str, pool_size: int = 10) -> Engine:
    use_settings(Settings(mode=Mode.demo, database_url=url))
    engine = make_engine(url, pool_size=pool_size)
    metadata = load_all().metadata
    metadata.drop_all(engine)
    metadata.create_all(engine)
    return engine


# -- the runs --------------------------------------------------------------------------


def run_sqlite(seconds: float, figures: list[Figure], profile: bool) -> None:
    with sqlite_database() as (url, folder):
        console.print("[bold]SQLite[/]: raw sqlite3 limits…")
        figures.append(
            Figure(
                "SQLite",
                "raw sqlite3: 1 row per commit",
                sqlite_raw(folder / "raw1.db", 1, seconds),
                "commits/s",
                "fsync of the WAL per commit (synchronous=FULL)",
            )
        )
        figures.append(
            Figure(
                "SQLite",
                "raw sqlite3: 50 rows per commit",
                sqlite_raw(folder / "raw50.db", 50, seconds),
                "rows/s",
                "CPU: SQLite B-tree inserts + Python building rows; fsync amortised",
            )
        )
        engine = prepare(url)
        figures.append(
            Figure(
                "SQLite",
                "ensure_customer_accounts (10,000 in one call)",
                open_accounts(engine),
                "accounts/s",
                "CPU: Core executemany + 10,000 audit records",
            )
        )
        workload = Workload(new_id()[:10])
        for batch in (1, 50, 200):
            console.print(f"[bold]SQLite[/]: record_payments, {batch} per commit…")
            figures.append(
                Figure(
                    "SQLite",
                    f"record_payments: {batch} per commit",
                    record_rate(engine, workload, batch, seconds),
                    "payments/s",
                    "12 statements per transaction through SQLAlchemy + one fsync"
                    if batch == 1
                    else "CPU (one Python thread; one SQLite writer)",
                )
            )
        count, problems = ledger_summary(engine)
        console.print(f"SQLite: {count} payments recorded; check_ledger → {problems or 'clean'}")
        if profile:
            profile_batches(engine, workload, 50, min(seconds, 3.0))
        engine.dispose()


def run_pg(pg_url: str, seconds: float, threads: int, figures: list[Figure]) -> None:
    tag = f"{os.getpid()}"
    url_obj = make_url(pg_url)
    parts = {
        "host": url_obj.host or "127.0.0.1",
        "port": str(url_obj.port or 5432),
        "user": url_obj.username or "postgres",
        "password": (url_obj.password and str(url_obj.password)) or "",
    }
    admin = url_obj.set(drivername="postgresql").render_as_string(hide_password=False)
    with pg_database(pg_url, f"ledger_bench_{tag}") as (url, conninfo):
        console.print("[bold]PostgreSQL[/]: raw psycopg limits…")
        figures.append(
            Figure(
                "PostgreSQL",
                "raw psycopg: 1 row per commit (1 connection)",
                pg_raw(conninfo, 1, seconds),
                "commits/s",
                "WAL flush per commit + round trips",
            )
        )
        figures.append(
            Figure(
                "PostgreSQL",
                "raw psycopg: 50 rows per commit (1 connection)",
                pg_raw(conninfo, 50, seconds),
                "rows/s",
                "CPU (client and server share 2 cores)",
            )
        )
        console.print("[bold]PostgreSQL[/]: pgbench (about 30 s)…")
        tps, command = pgbench(admin, parts, f"ledger_bench_pgbench_{tag}")
        figures.append(
            Figure(
                "PostgreSQL",
                command,
                tps,
                "tps",
                "server CPU and WAL group commit, 32 clients",
            )
        )
        engine = prepare(url, pool_size=max(threads, 4))
        figures.append(
            Figure(
                "PostgreSQL",
                "ensure_customer_accounts (10,000 in one call)",
                open_accounts(engine),
                "accounts/s",
                "CPU: Core executemany + 10,000 audit records",
            )
        )
        workload = Workload(new_id()[:10])
        for batch in (1, 50, 200):
            console.print(f"[bold]PostgreSQL[/]: record_payments, {batch} per commit…")
            figures.append(
                Figure(
                    "PostgreSQL",
                    f"record_payments: {batch} per commit (1 connection)",
                    record_rate(engine, workload, batch, seconds),
                    "payments/s",
                    "15 round trips per transaction + WAL flush"
                    if batch == 1
                    else "CPU: Python client (one thread)",
                )
            )
        console.print(f"[bold]PostgreSQL[/]: {threads} threads × 50 per commit…")
        figures.append(
            Figure(
                "PostgreSQL",
                f"record_payments: {threads} threads × 50 per commit",
                record_rate_threads(engine, workload, 50, seconds, threads),
                "payments/s",
                "the GIL: one Python process computes for all threads",
            )
        )
        console.print(f"[bold]PostgreSQL[/]: {threads} threads × 1 per commit…")
        figures.append(
            Figure(
                "PostgreSQL",
                f"record_payments: {threads} threads × 1 per commit",
                record_rate_threads(engine, workload, 1, seconds, threads),
                "payments/s",
                "the GIL, as above",
            )
        )
        engine.dispose()
        procs = threads
        console.print(f"[bold]PostgreSQL[/]: {procs} processes × 50 per commit…")
        figures.append(
            Figure(
                "PostgreSQL",
                f"record_payments: {procs} processes × 50 per commit",
                record_rate_processes(url, workload.run, 50, seconds, procs),
                "payments/s",
                "2 CPU cores shared by the clients and the server",
            )
        )
        engine = make_engine(url)
        count, problems = ledger_summary(engine)
        engine.dispose()
        console.print(
            f"PostgreSQL: {count} payments recorded; check_ledger → {problems or 'clean'}"
        )


def profile_batches(engine: Engine, workload: Workload, batch: int, seconds: float) -> None:
    """cProfile of ``record_payments`` + commit, grouped by where the time goes."""
    rng = random.Random(7)
    profiler = cProfile.Profile()
    profiler.enable()
    timed(seconds, lambda: record_step(engine, workload, batch, rng))
    profiler.disable()
    stats = pstats.Stats(profiler)
    groups: collections.Counter[str] = collections.Counter()
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        groups[_group(filename, name)] += own
    total = sum(groups.values())
    table = Table(title=f"Where the time goes (SQLite, {batch} per commit, cProfile own time)")
    table.add_column("part")
    table.add_column("share", justify="right")
    for group, spent in groups.most_common(10):
        table.add_row(group, f"{100 * spent / total:.1f}%")
    console.print(table)
    cumulative = Table(title="Cumulative time of the main steps")
    cumulative.add_column("function")
    cumulative.add_column("share", justify="right")
    wanted = (
        "record_payments",
        "commit",
        "write",
        "emit",
        "_announce_recorded",
        "write_transfers",
        "_claim_keys",
        "body_hash",
        "load_accounts",
        "_flush",
    )
    rows = []
    for (filename, line, name), (_cc, _nc, _own, cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name in wanted and ("teleserve" in filename or name == "_flush"):
            rows.append(
                (cum, f"{filename.split('src/')[-1].split('site-packages/')[-1]}:{line} {name}")
            )
    for cum, label in sorted(rows, reverse=True):
        cumulative.add_row(label, f"{100 * cum / total:.1f}%")
    console.print(cumulative)


def _group(filename: str, name: str) -> str:
    if "teleserve/payments" in filename:
        return "teleserve.payments (validation, planning, rows)"
    if "teleserve/core/audit" in filename:
        return "core.audit (hash chains)"
    if "teleserve/core" in filename:
        return "core (uow, outbox, db types, ids)"
    if "sqlalchemy/orm" in filename:
        return "SQLAlchemy ORM (outbox messages via uow.emit)"
    if "sqlalchemy" in filename:
        return "SQLAlchemy Core/engine (statements, bind processing)"
    if "sqlite3" in name or "psycopg" in filename:
        return "driver (SQLite C code, fsync)"
    if "json" in filename:
        return "json"
    return "other Python (datetime, hashlib, dataclasses…)"


# -- output ----------------------------------------------------------------------------


def _cpu(figure: Figure) -> str:
    return "—" if figure.value.cpu_us is None else f"{figure.value.cpu_us:,.0f}"


def show(figures: list[Figure], markdown: Path | None) -> None:
    table = Table(title=f"Ledger posting on {platform.node()} ({os.cpu_count()} CPUs)")
    columns = ("database", "measure", "result", "unit", "client CPU µs/unit", "what limits it")
    for column in columns:
        table.add_column(column, justify="right" if column in columns[2:5:2] else "left")
    for f in figures:
        table.add_row(f.database, f.measure, f"{f.value.rate:,.0f}", f.unit, _cpu(f), f.limited_by)
    console.print(table)
    if markdown is not None:
        lines = [
            "| database | measure | result | unit | client CPU µs/unit | what limits it |",
            "|---|---|---:|---|---:|---|",
            *(
                f"| {f.database} | {f.measure} | {f.value.rate:,.0f} | {f.unit} | {_cpu(f)} "
                f"| {f.limited_by} |"
                for f in figures
            ),
        ]
        markdown.write_text("\n".join(lines) + "\n")
        console.print(f"markdown table written to {markdown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pg-url", default=os.environ.get("TELESERVE_BENCH_PG_URL", DEFAULT_PG_URL)
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile one SQLite run")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown")
    args = parser.parse_args()

    figures: list[Figure] = []
    console.print(
        f"load average before: {os.getloadavg()[0]:.2f} (other work on the machine skews figures)"
    )
    run_sqlite(args.seconds, figures, args.profile)
    if not args.skip_pg:
        run_pg(args.pg_url, args.seconds, args.threads, figures)
    console.print(f"load average after: {os.getloadavg()[0]:.2f}")
    show(figures, args.markdown)


if __name__ == "__main__":
    main()
