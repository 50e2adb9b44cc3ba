"""The kiosk money batch alone: ``MoneyWriter.settle`` in a loop, no network, no front.

What the gateway's writer costs per payment when nothing else competes for the CPU —
the figure to drive down when ``kiosk_load.py`` shows the writer as the bottleneck
(BENCHMARKS.md, "Kiosk load"). It seeds the demo operator and registers terminals like
``kiosk_load.py``, builds CASH_PAYMENT jobs as a front process hands them over (one ¥100
note to a random seeded number, each terminal's serials in order), then records
``--payments`` of them in batches of ``--batch`` through the real ``MoneyWriter.settle``
(the SQLite writer runs inline exactly so in ``gateway.processes``). It prints
payments/s, the process's CPU per payment, where a batch's time goes (waiting for the
write lock, recording, committing), and — same run, same disk — SQLite's raw
single-row ``synchronous=FULL`` commits/s or PostgreSQL's pgbench tps.

No outbox worker runs: the payments' events stay queued (``kiosk_load.py`` measures the
whole server, worker included).

Usage::

    .venv/bin/python bench/money_batch_bench.py [--db sqlite|postgresql]
        [--payments 40000] [--batch 200] [--terminals 1000] [--profile out.pstats]
    .venv/bin/python bench/money_batch_bench.py --fixed-cost   # CPU a batch by size, and
        # the fit: fixed cost a batch + cost a payment (what p99 at moderate load waits on)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

from bench_common import database_parser, run_on_database
from kiosk_load import _limits, _prepare
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import Engine

from teleserve.core.db import make_engine
from teleserve.core.settings import get_settings
from teleserve.gateway import money
from teleserve.gateway.body import encode_body
from teleserve.gateway.catalog import CASH_PAYMENT, SERV_TYPES, Channel
from teleserve.gateway.checks import Accepted
from teleserve.gateway.directory import TerminalDirectory
from teleserve.gateway.frame import Frame, Header
from teleserve.gateway.money import Answer, Job, MoneyWriter
from teleserve.gateway.receipts import SiteNames

console = Console(width=None if sys.stdout.isatty() else 150)


def _jobs(
    directory: TerminalDirectory, keys: dict[str, bytes], numbers: list[str], count: int
) -> list[Job]:
    rng = random.Random(7)
    entries = {terminal_id: directory.get(terminal_id) for terminal_id in keys}
    serials = dict.fromkeys(keys, 0)
    terminal_ids = list(keys)
    jobs: list[Job] = []
    now_ms = int(time.time() * 1000)
    for _ in range(count):
        # Arrivals spread at random over the fleet, as in kiosk_load.py: a batch's
        # payments come from terminals all over the serial-keyed indexes.
        terminal_id = rng.choice(terminal_ids)
        entry = entries[terminal_id]
        assert entry is not None
        serials[terminal_id] += 1
        body = {
            "msisdn": rng.choice(numbers),
            "amount": 10000,
            "notes": [{"value": 10000, "count": 1}],
            "cash_box_id": "BOX-1",
            "txn_time_ms": now_ms,
        }
        header = Header(
            terminal_id, serials[terminal_id], CASH_PAYMENT, "Q", True, "00000", now_ms, "0" * 8
        )
        accepted = Accepted(
            frame=Frame(header, encode_body(body), b"\0" * 8),
            body=body,
            serv_type=SERV_TYPES[CASH_PAYMENT],
            terminal=entry.view,
            channel=Channel.BUSINESS,
            key=keys[terminal_id],
            session_id="0" * 8,
        )
        jobs.append(Job(accepted, entry))
    return jobs


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _writer_and_jobs(
    args: argparse.Namespace, url: str, folder: Path, count: int
) -> tuple[Engine, MoneyWriter, list[Job]]:
    """The seeded operator and its terminals, an inline writer, and ``count`` jobs."""
    console.print(f"money batch on {args.db}: seeding and registering {args.terminals} terminals")
    keys, numbers = _prepare(url, folder, args.customers, args.terminals)
    engine = make_engine(url)
    # The writer's own figures (``_spent``) are read here, not reset by its log report.
    money.REPORT_EVERY_S = float("inf")
    writer = MoneyWriter(engine, get_settings(), SiteNames(engine), threads=False)
    return engine, writer, _jobs(TerminalDirectory(engine, 3600), keys, numbers, count)


def run(args: argparse.Namespace, url: str, folder: Path, pg: tuple[str, str] | None) -> None:
    engine, writer, jobs = _writer_and_jobs(args, url, folder, args.payments)
    batches = [jobs[i : i + args.batch] for i in range(0, len(jobs), args.batch)]
    profiler = cProfile.Profile() if args.profile else None
    held = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("recording", total=len(jobs))
        started, cpu_started = time.perf_counter(), _cpu()
        for batch in batches:
            if profiler is not None:
                profiler.enable()
            outcomes = writer.settle(batch)
            if profiler is not None:
                profiler.disable()
            for outcome in outcomes:
                if not isinstance(outcome, Answer) or outcome.err_number != "00000":
                    raise SystemExit(f"a payment was not recorded: {outcome!r}")
                held += b'"held"' in outcome.body
            progress.update(task, advance=len(batch))
        wall, cpu = time.perf_counter() - started, _cpu() - cpu_started
    engine.dispose()
    if profiler is not None:
        profiler.dump_stats(args.profile)
    count = len(jobs)
    table = Table(title=f"MoneyWriter.settle alone, {args.db}, {os.cpu_count()} CPUs")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("payments recorded (held)", f"{count:,} ({held:,})")
    table.add_row("batch size", f"{args.batch}")
    table.add_row("payments/s", f"{count / wall:,.0f}")
    table.add_row("CPU per payment (this process)", f"{1e6 * cpu / count:,.0f} µs")
    per_batch = len(batches)
    table.add_row(
        "per batch: lock wait / record / commit",
        " / ".join(f"{1000 * s / per_batch:.1f}" for s in writer._spent) + " ms",
    )
    for name, value in _limits(args, folder, pg).items():
        table.add_row(name, value)
    console.print(table)


# --fixed-cost: batch sizes and how many batches of each, interleaved round by round so
# that a change in the VM's speed touches every size alike.
FIXED_COST_SIZES = {1: 600, 4: 300, 16: 120, 64: 40}


def run_fixed_cost(
    args: argparse.Namespace, url: str, folder: Path, pg: tuple[str, str] | None
) -> None:
    """CPU a batch by batch size (thread CPU around each ``settle``, medians), and the
    least-squares line through them: the fixed cost a batch pays whatever its size, which
    is what a payment waits for at moderate load, and the cost of each payment in it."""
    total = sum(size * count for size, count in FIXED_COST_SIZES.items())
    engine, writer, made = _writer_and_jobs(args, url, folder, total)
    jobs = iter(made)
    cpu: dict[int, list[float]] = {size: [] for size in FIXED_COST_SIZES}
    left = dict(FIXED_COST_SIZES)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("recording", total=total)
        while any(left.values()):
            for size in FIXED_COST_SIZES:
                if not left[size]:
                    continue
                left[size] -= 1
                batch = [next(jobs) for _ in range(size)]
                started = time.thread_time()
                outcomes = writer.settle(batch)
                cpu[size].append(time.thread_time() - started)
                if any(not isinstance(o, Answer) or o.err_number != "00000" for o in outcomes):
                    raise SystemExit(f"a payment was not recorded: {outcomes!r}")
                progress.update(task, advance=size)
    writer.stop()
    engine.dispose()
    medians = {size: 1e6 * statistics.median(values) for size, values in cpu.items()}
    sizes = list(medians)
    mean_n = statistics.fmean(sizes)
    mean_cpu = statistics.fmean(medians.values())
    slope = sum((n - mean_n) * (medians[n] - mean_cpu) for n in sizes) / sum(
        (n - mean_n) ** 2 for n in sizes
    )
    fixed = mean_cpu - slope * mean_n
    table = Table(title=f"MoneyWriter.settle by batch size, {args.db}, {os.cpu_count()} CPUs")
    for column in ("batch size", "batches", "CPU a batch (median)", "CPU a payment"):
        table.add_column(column, justify="right")
    for size in sizes:
        table.add_row(
            f"{size}",
            f"{len(cpu[size]):,}",
            f"{medians[size]:,.0f} µs",
            f"{medians[size] / size:,.0f} µs",
        )
    console.print(table)
    console.print(
        f"fit: CPU a batch ≈ {fixed:,.0f} µs + {slope:,.0f} µs × payments "
        f"(fixed cost a batch, cost a payment)"
    )
    for name, value in _limits(args, folder, pg).items():
        console.print(f"{name}: {value}")


def main() -> None:
    parser = database_parser(__doc__)
    parser.add_argument("--payments", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument(
        "--fixed-cost",
        action="store_true",
        help="CPU a batch at batch sizes 1, 4, 16 and 64, and the fixed cost a batch",
    )
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--profile", help="write a cProfile of the batches to this file")
    args = parser.parse_args()
    run_on_database(args, "money_batch", run_fixed_cost if args.fixed_cost else run)


if __name__ == "__main__":
    main()
