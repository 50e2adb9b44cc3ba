"""Kiosk load: N terminals over real TCP against the TSP/1 gateway in its own process.

What it does, for one database (a fresh migrated SQLite file in a temporary directory, or
a scratch PostgreSQL database created beside ``--pg-url`` and dropped at the end):

  1. seeds the demo operator (``--customers`` customers, their lines and ledger
     accounts) and registers ``--terminals`` terminals at its halls, keeping their master
     keys;
  2. starts ``teleserve serve`` as deployed (demo mode, loopback, the business channel on
     a free port) and waits for it to listen;
  3. connects every terminal (one long business connection each) and signs it on;
  4. offers an open-loop load for ``--seconds``: arrivals are a Poisson process of
     ``--rate`` requests/s spread evenly over the terminals; a share ``--query-share`` of
     them are TXN_STATUS queries (2012) about an earlier payment of the same terminal, the
     rest CASH_PAYMENTs (2001, one ¥100 note, to a random seeded number). A terminal
     sends one request at a time, as TSP/1 requires: an arrival finding its terminal busy
     waits, and its latency counts from when it was due (no coordinated omission);
  5. prints payments/s and queries/s answered, p50 / p99 latency (from when a request was
     due) and the p50 / p99 of a payment's own round trip (sent → answered), errors, the server's
     RSS and CPU, and the load generator's own CPU — beside the machine's limits measured
     in the same run: SQLite single-row ``synchronous=FULL`` commits/s on the same disk,
     and on PostgreSQL ``pgbench -c 32 -j 2 -T 30`` (scale 10) tps.

``--idle N`` instead connects N terminals that only sign on and keep alive, and reports the
server's RSS with all of them connected (the issue's 10,000 idle terminals in ≤ 1 GiB).

On PostgreSQL the server is ``--role gateway`` (the outbox worker is another process in
production; none runs here). On SQLite the server is one process as deployed
(``--role all``): its outbox worker delivers the payments' events while they are
recorded, and that CPU is part of the figures.

Usage::

    .venv/bin/python bench/kiosk_load.py --db sqlite --terminals 1000 --rate 1000
    .venv/bin/python bench/kiosk_load.py --db sqlite --terminals 200 --rate 4000
    .venv/bin/python bench/kiosk_load.py --db postgresql --terminals 200 --rate 3000
    .venv/bin/python bench/kiosk_load.py --db sqlite --idle 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_common import database_parser, run_on_database
from ledger_bench import pgbench, sqlite_raw
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import make_url
from tmf_api_bench import _wait_for_outbox_drained

from teleserve.core import migrate
from teleserve.core.actor import SYSTEM
from teleserve.core.db import make_engine
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.demo.data import CITIES
from teleserve.demo.seed import seed_database
from teleserve.gateway.body import encode_body, parse_body
from teleserve.gateway.frame import Header
from teleserve.gateway.mac import derive_session_key
from teleserve.gateway.reply import signed_frame
from teleserve.gateway.stream import FrameDecoder
from teleserve.inventory.models import Subscription
from teleserve.terminals import service as terminals

ZERO_SESSION = "00000000"
console = Console(width=None if sys.stdout.isatty() else 150)


# -- set-up ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _prepare(
    url: str, folder: Path, customers: int, count: int
) -> tuple[dict[str, bytes], list[str]]:
    """Migrate, seed, register terminals: ({terminal id: master key}, service numbers)."""
    settings = Settings(
        mode=Mode.demo,
        database_url=url,
        audit_checkpoint_dir=folder / "checkpoints",
        audit_signing_key_file=folder / "audit.key",
    )
    use_settings(settings)
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        seed_database(engine, customers=customers, progress=False)
        with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
            numbers = list(
                uow.session.scalars(
                    select(Subscription.service_number).where(Subscription.kind == "mobile")
                )
            )
        halls = [hall[0] for city in CITIES for hall in city.halls]
        keys: dict[str, bytes] = {}
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("registering terminals", total=count)
            for start in range(0, count, 500):
                with UnitOfWork(engine, SYSTEM) as uow:
                    for n in range(start, min(start + 500, count)):
                        terminal_id = f"LT{n:06d}"
                        made = terminals.register_terminal(
                            uow,
                            {
                                "terminal_id": terminal_id,
                                "site": halls[n % len(halls)],
                                "device_mode": "sim",
                            },
                        )
                        keys[terminal_id] = bytes.fromhex(made.master_key)
                    uow.commit()
                progress.update(task, completed=min(start + 500, count))
    finally:
        engine.dispose()
    if not numbers:
        raise SystemExit("the seed made no mobile lines")
    return keys, numbers


@contextlib.contextmanager
def _server(
    url: str, folder: Path, port: int, management_port: int, count: int = 1, fronts: int = 0
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The server as deployed. SQLite: one process (the CLI refuses a split) — HTTP,
    gateway and the outbox worker together. PostgreSQL: ``count`` gateway-only processes
    sharing the ports (SO_REUSEPORT)."""
    teleserve = Path(sys.executable).with_name("teleserve")
    env = {
        **os.environ,
        "TELESERVE_MODE": "demo",
        "TELESERVE_DATABASE_URL": url,
        "TELESERVE_AUDIT_CHECKPOINT_DIR": str(folder / "checkpoints"),
        "TELESERVE_AUDIT_SIGNING_KEY_FILE": str(folder / "audit.key"),
        "TELESERVE_LOG_LEVEL": os.environ.get("KIOSK_LOAD_LOG_LEVEL", "WARNING"),
        "TELESERVE_GATEWAY_BUSINESS_PORT": str(port),
        "TELESERVE_GATEWAY_MANAGEMENT_PORT": str(management_port),
        # Every terminal is read once and then served from the cache.
        "TELESERVE_GATEWAY_TERMINAL_CACHE_S": "3600",
        # Thousands of terminals connect from this one loopback address.
        "TELESERVE_GATEWAY_CONNECTIONS_PER_ADDRESS_PER_MINUTE": "0",
        "TELESERVE_GATEWAY_PROCESSES": str(fronts),
    }
    sqlite = url.startswith("sqlite")
    if sqlite and count != 1:
        raise SystemExit("SQLite runs as one process: --gateways 1")
    if count > 1:
        env["TELESERVE_GATEWAY_REUSE_PORT"] = "1"
    role = ["--role", "all", "--port", str(_free_port())] if sqlite else ["--role", "gateway"]
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for n in range(count):
            log = (folder / f"server-{n}.log").open("wb")
            logs.append(log)
            processes.append(
                subprocess.Popen(
                    [str(teleserve), "serve", *role],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=folder,
                    preexec_fn=_raise_fd_limit,
                )
            )
            deadline = time.monotonic() + 60
            while True:
                if processes[-1].poll() is not None:
                    raise SystemExit(
                        "a server exited:\n" + (folder / f"server-{n}.log").read_text()
                    )
                # The newest process is up once the port answers (the first one did
                # already; a short pause lets the newest one bind).
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    if n == 0:
                        break
                    time.sleep(2)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the gateway did not listen within 60 s")
                time.sleep(0.2)
        if sqlite:
            _wait_for_outbox_drained(url)  # the seed's events, before measuring
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def _family(pids: list[int]) -> list[int]:
    """The server processes and their descendants (gateway front processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(stat[1])
    family = [pid for pid in pids if pid in parents]
    for pid in family:  # grows while it is walked: children, then theirs
        family.extend(child for child, parent in parents.items() if parent == pid)
    return family


def _proc_status(pids: list[int], field_name: str) -> int:
    """A ``kB`` figure of /proc/PID/status summed over the server processes and their
    children, in bytes."""
    total = 0
    for pid in _family(pids):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                total += int(line.split()[1]) * 1024
    return total


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in _family(pids):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- a terminal ------------------------------------------------------------------------


@dataclass
class Stats:
    payments: list[float] = field(default_factory=list)  # latencies, s
    queries: list[float] = field(default_factory=list)
    # Request sent → answer read, s: the server's part of a payment's latency (the rest is
    # waiting for the terminal's previous request, TSP/1 being one at a time).
    answered: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    held: int = 0
    measuring: bool = False

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class Terminal:
    def __init__(
        self, terminal_id: str, key: bytes, numbers: list[str], rng: random.Random
    ) -> None:
        self.terminal_id = terminal_id
        self.master_key = key
        self.numbers = numbers
        self.rng = rng
        self.serial = 0
        self.paid: list[int] = []
        self.lock = asyncio.Lock()
        self.session_id = ZERO_SESSION
        self.key = key

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.decoder = FrameDecoder()
        nonce = secrets.token_bytes(16)
        body = {"client_nonce": nonce.hex(), "software_version": "bench", "last_serial": 0}
        err, answer = await self._ask(1, body, key=self.master_key)
        if err != "00000":
            raise RuntimeError(f"{self.terminal_id} could not sign on: {err} {answer}")
        self.session_id = answer["session_id"]
        self.key = derive_session_key(self.master_key, nonce, bytes.fromhex(answer["server_nonce"]))

    async def _ask(
        self, serv_type: int, body: dict[str, Any], *, key: bytes | None = None
    ) -> tuple[str, Any]:
        self.serial += 1
        header = Header(
            self.terminal_id,
            self.serial,
            serv_type,
            "Q",
            True,
            "00000",
            int(time.time() * 1000),
            self.session_id,
        )
        self.writer.write(signed_frame(header, encode_body(body), key or self.key))
        while True:
            item = self.decoder.next()
            if item is not None:
                return self._answer(item)
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.decoder.feed(data)

    @staticmethod
    def _answer(item: Any) -> tuple[str, Any]:
        header = getattr(item, "header", None)
        if header is None:
            raise RuntimeError(f"bad frame from the server: {item!r}")
        return header.err_number, parse_body(item.body)

    async def request(self, due: float, query: bool, stats: Stats) -> None:
        async with self.lock:  # one request at a time per connection (TSP/1)
            if query and self.paid:
                err, body = await self._ask(2012, {"original_serial": self.rng.choice(self.paid)})
                bucket = stats.queries
            else:
                number = self.rng.choice(self.numbers)
                body_out = {
                    "msisdn": number,
                    "amount": 10000,
                    "notes": [{"value": 10000, "count": 1}],
                    "cash_box_id": "BOX-1",
                    "txn_time_ms": int(time.time() * 1000),
                }
                serial = self.serial + 1
                sent = time.monotonic()
                err, body = await self._ask(2001, body_out)
                if stats.measuring:
                    stats.answered.append(time.monotonic() - sent)
                bucket = stats.payments
                if err == "00000":
                    self.paid.append(serial)
                    if body.get("status") == "held":
                        stats.held += 1
            if not stats.measuring:
                return
            if err != "00000":
                stats.error(err)
            else:
                bucket.append(time.monotonic() - due)

    async def keepalive(self) -> None:
        async with self.lock:
            await self._ask(3, {})


# -- the load --------------------------------------------------------------------------


async def _connect_all(
    keys: dict[str, bytes], numbers: list[str], port: int, seed: int
) -> list[Terminal]:
    rng = random.Random(seed)
    fleet = [Terminal(t, k, numbers, random.Random(rng.random())) for t, k in keys.items()]
    gate = asyncio.Semaphore(64)

    async def one(terminal: Terminal) -> None:
        async with gate:
            await terminal.connect(port)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("signing on", total=len(fleet))
        for start in range(0, len(fleet), 500):
            await asyncio.gather(*(one(t) for t in fleet[start : start + 500]))
            progress.update(task, completed=min(start + 500, len(fleet)))
    return fleet


async def _offer(
    fleet: list[Terminal], rate: float, seconds: float, share: float, stats: Stats, seed: int
) -> float:
    """Poisson arrivals at ``rate``/s over ``seconds``; returns the measured wall time."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    start = loop.time()
    due = start
    end = start + seconds
    while due < end:
        due += rng.expovariate(rate)
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        terminal = fleet[rng.randrange(len(fleet))]
        # Latencies are measured on the monotonic clock the loop uses.
        task = asyncio.create_task(terminal.request(due, rng.random() < share, stats))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending, return_exceptions=True)
    return loop.time() - start


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _load(
    args: argparse.Namespace, keys: dict[str, bytes], numbers: list[str], port: int, pids: list[int]
) -> dict[str, Any]:
    fleet = await _connect_all(keys, numbers, port, args.seed)
    stats = Stats()
    # Warm-up (not measured): the server's caches, the writer's first batches.
    await _offer(
        fleet, args.rate, min(3.0, args.seconds / 3), args.query_share, stats, args.seed + 1
    )
    stats.measuring = True
    cpu_server = _cpu_seconds(pids)
    cpu_own = _own_cpu()
    wall = await _offer(fleet, args.rate, args.seconds, args.query_share, stats, args.seed + 2)
    result = {
        "wall_s": wall,
        "payments_per_s": len(stats.payments) / wall,
        "queries_per_s": len(stats.queries) / wall,
        "payment_p50_ms": _percentile(stats.payments, 0.50),
        "payment_p99_ms": _percentile(stats.payments, 0.99),
        "answer_p50_ms": _percentile(stats.answered, 0.50),
        "answer_p99_ms": _percentile(stats.answered, 0.99),
        "query_p50_ms": _percentile(stats.queries, 0.50),
        "query_p99_ms": _percentile(stats.queries, 0.99),
        "errors": stats.errors,
        "held": stats.held,
        "server_cpu_s": _cpu_seconds(pids) - cpu_server,
        "loadgen_cpu_s": _own_cpu() - cpu_own,
        "server_rss_mib": _proc_status(pids, "VmRSS") / 2**20,
        "server_peak_rss_mib": _proc_status(pids, "VmHWM") / 2**20,
    }
    for terminal in fleet:
        terminal.writer.close()
    return result


async def _idle(
    args: argparse.Namespace, keys: dict[str, bytes], port: int, pids: list[int]
) -> dict[str, Any]:
    before = _proc_status(pids, "VmRSS")
    started = time.monotonic()
    fleet = await _connect_all(keys, [], port, args.seed)
    connected = time.monotonic() - started
    # Everyone keeps alive once more, then RSS is read with all sessions in place.
    await asyncio.gather(*(t.keepalive() for t in fleet))
    await asyncio.sleep(2)
    result = {
        "connected": len(fleet),
        "sign_on_s": connected,
        "server_rss_before_mib": before / 2**20,
        "server_rss_mib": _proc_status(pids, "VmRSS") / 2**20,
        "server_peak_rss_mib": _proc_status(pids, "VmHWM") / 2**20,
    }
    for terminal in fleet:
        terminal.writer.close()
    return result


# -- the machine's limits --------------------------------------------------------------


def _limits(args: argparse.Namespace, folder: Path, pg: tuple[str, str] | None) -> dict[str, str]:
    raw = sqlite_raw(folder / "raw.db", 1, 5)
    limits = {
        "SQLite commits/s (1 row, synchronous=FULL, same disk)": f"{raw.rate:,.0f}",
    }
    if pg is not None:
        parts = make_url(args.pg_url)
        url_parts = {
            "host": parts.host or "127.0.0.1",
            "port": str(parts.port or 5432),
            "user": parts.username or "postgres",
            "password": parts.password or "",
        }
        admin = (
            make_url(args.pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        measured, command = pgbench(admin, url_parts, "teleserve_kiosk_pgbench", seconds=30)
        limits[f"{command} tps"] = f"{measured.rate:,.0f}"
    return limits


# -- main --------------------------------------------------------------------------------


def run(args: argparse.Namespace, url: str, folder: Path, pg: tuple[str, str] | None) -> None:
    _raise_fd_limit()
    count = args.idle or args.terminals
    console.print(
        f"[bold]kiosk load[/] on {args.db}: "
        f"seeding {args.customers:,} customers, {count:,} terminals"
    )
    keys, numbers = _prepare(url, folder, args.customers, count)
    port, management = _free_port(), _free_port()
    with _server(url, folder, port, management, args.gateways, args.fronts) as servers:
        pids = [server.pid for server in servers]
        if args.idle:
            result = asyncio.run(_idle(args, keys, port, pids))
        else:
            result = asyncio.run(_load(args, keys, numbers, port, pids))
    limits = _limits(args, folder, pg)
    processes = f"{args.gateways} gateway processes" if args.gateways > 1 else "one process"
    if args.fronts:
        processes += f" + {args.fronts} front processes each"
    table = Table(title=f"TSP/1 gateway, {args.db}, {processes}, {os.cpu_count()} CPUs")
    table.add_column("figure")
    table.add_column("value", justify="right")
    if args.idle:
        table.add_row("idle terminals connected", f"{result['connected']:,}")
        table.add_row("signed on in", f"{result['sign_on_s']:.1f} s")
        table.add_row(
            "server RSS before / with all connected",
            f"{result['server_rss_before_mib']:.0f} / {result['server_rss_mib']:.0f} MiB",
        )
    else:
        offered = (
            f"{args.rate:,.0f}/s over {args.terminals:,} terminals, {args.query_share:.0%} queries"
        )
        table.add_row("offered (open loop, Poisson)", offered)
        table.add_row("cash payments answered/s", f"{result['payments_per_s']:,.0f}")
        table.add_row(
            "payment p50 / p99",
            f"{result['payment_p50_ms']:.1f} / {result['payment_p99_ms']:.1f} ms",
        )
        table.add_row(
            "payment sent → answered p50 / p99",
            f"{result['answer_p50_ms']:.1f} / {result['answer_p99_ms']:.1f} ms",
        )
        table.add_row("TXN_STATUS queries answered/s", f"{result['queries_per_s']:,.0f}")
        table.add_row(
            "query p50 / p99", f"{result['query_p50_ms']:.1f} / {result['query_p99_ms']:.1f} ms"
        )
        table.add_row("errors", str(result["errors"] or 0))
        table.add_row("server CPU / wall", f"{result['server_cpu_s'] / result['wall_s']:.2f} cores")
        table.add_row(
            "load generator CPU / wall", f"{result['loadgen_cpu_s'] / result['wall_s']:.2f} cores"
        )
        table.add_row(
            "server RSS (peak)",
            f"{result['server_rss_mib']:.0f} ({result['server_peak_rss_mib']:.0f}) MiB",
        )
    for name, value in limits.items():
        table.add_row(name, value)
    console.print(table)


def main() -> None:
    parser = database_parser(__doc__)
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests/s offered in all")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--query-share", type=float, default=0.2)
    parser.add_argument(
        "--idle", type=int, default=0, help="connect this many idle terminals instead"
    )
    parser.add_argument(
        "--gateways", type=int, default=1, help="gateway processes (PostgreSQL only)"
    )
    parser.add_argument(
        "--fronts",
        type=int,
        default=0,
        help="gateway front processes (TELESERVE_GATEWAY_PROCESSES; 0: all in one process)",
    )
    parser.add_argument("--seed", type=int, default=7)
    run_on_database(parser.parse_args(), "kiosk_load", run)


if __name__ == "__main__":
    main()
