"""Hand-run measurement of ``numbers.service.assign_batch`` (not collected by pytest).

Builds a scratch database (a temporary SQLite file, or a scratch PostgreSQL database
created beside ``--pg-url`` and dropped at the end), creates ranges, then assigns
``--count`` free numbers straight from free (system actor, as the demo seed does) over
cards holding ``--per-card`` numbers each, in batches of ``--batch``; every batch is its
own committed unit of work. Each of ``--repeat`` runs starts from empty tables. Reports
numbers/s (wall clock and per CPU second of this process) for the whole (``assign_batch``
+ commit) and, for the best run, where the time goes, by wrapping the service's steps and
the kernel's audit/outbox entry points with timers. Beside it, the machine's limit for the
same write measured in the same run: the bare driver (no SQLAlchemy, no checks, no audit or
outbox) marking the same numbers assigned in the real ``pool_number`` table, one
``UPDATE .. WHERE value = ?`` per number in one ``executemany``, ``--batch`` per commit.

Usage::

    .venv/bin/python bench/numbers_assign_bench.py --db sqlite [--repeat 5]
    .venv/bin/python bench/numbers_assign_bench.py --db postgresql \\
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--batch 1000]
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from teleserve.core import audit, outbox
from teleserve.core.crypto import blind_index
from teleserve.core.db import make_engine
from teleserve.core.outbox import OutboxMessage
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.models import load_all
from teleserve.numbers import service
from teleserve.numbers.models import PoolNumber
from teleserve.numbers.schemas import AssignItem

TIMES: dict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] += time.perf_counter() - start

    return wrapper


def instrument() -> None:
    for name in (
        "_number_rows",
        "_checked_items",
        "_check_assignable",
        "_lock_id_cards",
        "_check_card_limits",
        "_write_assignments",
        "_grade_fees",
        "NumberOut",  # the answers, built from the schema class the service imported
    ):
        setattr(service, name, timed(name, getattr(service, name)))
    UnitOfWork.audit = timed("uow.audit (queue)", UnitOfWork.audit)  # type: ignore[method-assign]
    UnitOfWork.emit = timed("uow.emit (queue)", UnitOfWork.emit)  # type: ignore[method-assign]
    # The unit of work calls these through their modules at commit.
    audit.write = timed("commit: audit.write", audit.write)
    outbox.write = timed("commit: outbox.write", outbox.write)
    Session.commit = timed("commit: COMMIT", Session.commit)  # type: ignore[method-assign]


def build_pool(engine: Any, ranges: int) -> list[str]:
    """``ranges`` ranges of 10,000 numbers: 13800100000-… (prefixes 1380010, 1380011…)."""
    values = []
    with UnitOfWork(engine) as uow:
        service.install_default_grades(uow)
        for n in range(ranges):
            prefix = f"13800{10 + n}"
            service.create_range(
                uow, org_path="/op/gd/sz/", kind="mobile", prefix=prefix, start="0000", end="9999"
            )
            values += [f"{prefix}{i:04d}" for i in range(10_000)]
        uow.commit()
    return values


Run = tuple[float, float, dict[str, float]]


def run(engine: Any, count: int, batch: int, per_card: int) -> Run:
    """One measured run on empty tables: (wall seconds, CPU seconds of this process, wall
    seconds per step). On a busy machine the CPU time is the steadier figure."""
    metadata = load_all().metadata
    metadata.drop_all(engine)
    metadata.create_all(engine)
    values = build_pool(engine, -(-count // 10_000))[:count]
    cards = [blind_index(f"1101011990{n:08d}", "id_number") for n in range(count // per_card + 1)]
    items = [
        AssignItem(
            number=value,
            holder=f"seed:{i}",
            id_index=cards[i // per_card],
            customer_id=f"C{i // per_card:08d}",
            subscription_ref=f"S{i:08d}",
        )
        for i, value in enumerate(values)
    ]
    TIMES.clear()
    start, cpu_start = time.perf_counter(), time.process_time()
    for first in range(0, count, batch):
        with UnitOfWork(engine) as uow:
            timed("assign_batch (total)", service.assign_batch)(uow, items[first : first + batch])
            timed("uow.commit (total)", uow.commit)()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    with engine.connect() as conn:
        assigned = conn.scalar(
            select(func.count()).select_from(PoolNumber).where(PoolNumber.status == "assigned")
        )
        events = conn.scalar(select(func.count()).select_from(OutboxMessage))
    assert assigned == count and events == count, (assigned, events)
    return elapsed, cpu, dict(TIMES)


RAW_ASSIGN = (
    "UPDATE pool_number SET status = 'assigned', holder = {p}, reserved_until = NULL, "
    "id_index = {p}, customer_id = {p}, subscription_ref = {p}, assigned_at = {p}, "
    "quarantine_until = NULL, updated_at = {p} WHERE value = {p}"
)


def raw_limit(engine: Any, count: int, batch: int, repeat: int) -> float:
    """Best numbers/s of the bare driver doing the write of ``assign_batch`` on the numbers
    the last run assigned (set back to free first, untimed)."""
    sqlite = engine.dialect.name == "sqlite"
    sql = RAW_ASSIGN.format(p="?" if sqlite else "%s")
    now = datetime.now(UTC)
    # SQLite keeps UTCDateTime as naive UTC text, as the project's column type writes it.
    stamp: Any = now.replace(tzinfo=None).isoformat(sep=" ") if sqlite else now
    conn = engine.raw_connection()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT value FROM pool_number WHERE status = 'assigned' ORDER BY value")
        values = [row[0] for row in cursor.fetchall()][:count]
        assert len(values) == count, len(values)
        rates = []
        for attempt in range(repeat):
            # make_engine takes transaction control from SQLite's driver: BEGIN explicitly
            # (sqlite3's commit() then commits it); psycopg begins implicitly.
            if sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(
                "UPDATE pool_number SET status = 'free', holder = NULL, id_index = NULL, "
                "customer_id = NULL, subscription_ref = NULL, assigned_at = NULL "
                "WHERE status = 'assigned'"
            )
            conn.commit()
            rows = [
                (f"raw:{attempt}", f"idx{i // 4}", f"C{i // 4:08d}", f"S{i:08d}", stamp, stamp, v)
                for i, v in enumerate(values)
            ]
            start = time.perf_counter()
            for first in range(0, len(rows), batch):
                if sqlite:
                    cursor.execute("BEGIN IMMEDIATE")
                chunk = rows[first : first + batch]
                cursor.executemany(sql, chunk)
                if cursor.rowcount != len(chunk):
                    raise RuntimeError(f"raw update changed {cursor.rowcount} of {len(chunk)}")
                conn.commit()
            rates.append(len(rows) / (time.perf_counter() - start))
        return max(rates)
    finally:
        conn.close()


def report(label: str, args: argparse.Namespace, runs: list[Run], limit: float) -> None:
    count = args.count
    rates = sorted(count / seconds for seconds, _cpu, _times in runs)
    cpu_rates = sorted(count / cpu for _seconds, cpu, _times in runs)
    print(f"\n{label}: {count} numbers in batches of {args.batch}, {args.per_card} per card")
    print(f"  numbers/s over {len(runs)} runs: " + ", ".join(f"{r:,.0f}" for r in rates))
    print("  numbers per CPU second: " + ", ".join(f"{r:,.0f}" for r in cpu_rates))
    print(
        f"  machine limit, same run: bare driver UPDATE by value, executemany, {args.batch} per"
        f" commit (best of {args.repeat}): {limit:,.0f} numbers/s"
    )
    elapsed, cpu, times = min(runs, key=lambda run: run[0])
    print(
        f"  best run {elapsed:.3f} s ({cpu:.3f} s CPU here) → {count / elapsed:,.0f} numbers/s;"
        " its steps (wall):"
    )
    for name, seconds in sorted(times.items(), key=lambda kv: -kv[1]):
        share = 100 * seconds / elapsed
        print(
            f"  {name:32s} {seconds:7.3f} s  {share:5.1f} %  {seconds / count * 1e6:6.1f} µs/number"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--per-card", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    instrument()
    with tempfile.TemporaryDirectory() as tmp:
        if args.db == "sqlite":
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        else:
            admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text('DROP DATABASE IF EXISTS "teleserve_bench_numb" WITH (FORCE)'))
                conn.execute(text('CREATE DATABASE "teleserve_bench_numb"'))
            url = args.pg_url.rsplit("/", 1)[0] + "/teleserve_bench_numb"
        use_settings(Settings(mode=Mode.demo, database_url=url))
        engine = make_engine(url)
        try:
            runs = [run(engine, args.count, args.batch, args.per_card) for _ in range(args.repeat)]
            limit = raw_limit(engine, args.count, args.batch, args.repeat)
            report(args.db, args, runs, limit)
        finally:
            engine.dispose()
            if args.db == "postgresql":
                with admin.connect() as conn:
                    conn.execute(text('DROP DATABASE "teleserve_bench_numb" WITH (FORCE)'))
                admin.dispose()


if __name__ == "__main__":
    main()
