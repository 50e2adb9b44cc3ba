"""Simulated customers for ``teleserve demo``: background kiosks that take payments.

``teleserve demo`` runs this module as a child process (``python -m
teleserve.demo.customers --fleet FILE ...``). It hosts the fleet's background kiosks
itself: one kiosk agent per terminal (``kiosk.agent.Agent`` with ``--devices sim``
devices and its own journal), all on one event loop, each signed on to the gateway
exactly as ``teleserve kiosk`` would be. Beside each agent a customer loop plays a
person at the kiosk every few seconds through the agent's own customer flows
(``kiosk.flows.CustomerFlows``) and the sim devices' control API (``SimPanel``): a
number check, then notes into the escrow and a confirm, or a card and an amount.

Why in-process agents rather than driving ``teleserve kiosk`` processes: the sim devices
are objects inside the agent's process, and the touch UI's HTTP demo panel that could
drive them from outside is not part of every kiosk build; agents hosted here are the
same code with the devices at hand, one Python process instead of one per kiosk on a
small machine. The fleet file names the one kiosk that ``teleserve demo`` runs as a
separate ``teleserve kiosk`` process with its UI for the newcomer to click: it is never
driven from here.

Some customers pay for a number the operator does not know (without asking the number
check first, as happens when a line is terminated between the check and the payment):
PROTOCOL.md records that money ``held``, so the console's held-payment queue has
something in it. A few cards are declined. When a cash box is nearly full the kiosk's
box is collected (CASH_COLLECTION) and a new one put in, as a technician would.

This module uses the kiosk agent and the standard library only — never the server's
database: it is a terminal-side program like the kiosk itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from teleserve.core.logging import configure_logging, get_logger
from teleserve.kiosk.agent import Agent
from teleserve.kiosk.availability import Link
from teleserve.kiosk.config import ConfigError, KioskConfig, parse_server, read_key_file
from teleserve.kiosk.devices.sim import SimPanel
from teleserve.kiosk.flows import FlowError, PaymentOutcome, Refused
from teleserve.kiosk.journal import Journal

log = get_logger("teleserve.demo.customers")

# The customer mix. Notes (fen) and how often each is fed; card amounts (fen).
NOTE_WEIGHTS = {500: 1, 1000: 3, 2000: 3, 5000: 3, 10000: 2}
CARD_AMOUNTS = (2000, 3000, 5000, 10000, 20000)
CASH_SHARE = 0.65  # the rest pay by card
UNKNOWN_SHARE = 0.08  # pay for a number the operator does not know: held
DECLINED_SHARE = 0.05  # of card payments
# Issuer prefixes (BINs) of Chinese bank cards; the rest of a card number is random.
CARD_BINS = ("622202", "621700", "622848", "621483", "436742")
# Collect a cash box at this many notes (the sim box holds 2000; 90 % is a warning).
COLLECT_AT = 1500
TALLY_EVERY_S = 60.0


# -- the fleet file (written by ``demo.kiosks``, read here) ----------------------------


@dataclass(frozen=True, slots=True)
class KioskPlan:
    terminal_id: str
    site: str
    key_file: Path
    data_dir: Path


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """The demo's kiosks and the numbers its customers pay for."""

    kiosks: tuple[KioskPlan, ...]
    ui_terminal: str | None  # run as ``teleserve kiosk`` with its UI, not driven here
    payable: tuple[str, ...]  # numbers with a live line
    unknown: tuple[str, ...]  # numbers from the pool with no line

    @property
    def background(self) -> tuple[KioskPlan, ...]:
        return tuple(k for k in self.kiosks if k.terminal_id != self.ui_terminal)

    def dump(self, path: Path) -> None:
        data = asdict(self)
        data["kiosks"] = [
            {**k, "key_file": str(k["key_file"]), "data_dir": str(k["data_dir"])}
            for k in data["kiosks"]
        ]
        # Customer numbers: readable only by the user, like the keys beside it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), 0o600)
            json.dump(data, out, ensure_ascii=False, indent=1)

    @classmethod
    def load(cls, path: Path) -> FleetPlan:
        data = json.loads(path.read_text(encoding="utf-8"))
        kiosks = tuple(
            KioskPlan(k["terminal_id"], k["site"], Path(k["key_file"]), Path(k["data_dir"]))
            for k in data["kiosks"]
        )
        return cls(kiosks, data["ui_terminal"], tuple(data["payable"]), tuple(data["unknown"]))


# -- one background kiosk ----------------------------------------------------------------


class SimKiosk:
    """A kiosk agent with sim devices, hosted here. Like ``kiosk.cli.serve_kiosk`` it
    starts the agent over (recovery, sign-on, replay) on a remote ``restart`` command,
    keeping the journal and the devices; unlike it, it exposes the running agent, whose
    customer flows the customer loop calls."""

    def __init__(self, config: KioskConfig, data_dir: Path) -> None:
        self.config = config
        self.journal_path = data_dir / "journal.db"
        self.panel = SimPanel()
        self.agent: Agent | None = None

    @property
    def terminal_id(self) -> str:
        return self.config.terminal_id

    @property
    def online(self) -> bool:
        return self.agent is not None and self.agent.link is Link.ONLINE

    async def run(self, stop: asyncio.Event) -> None:
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        while not stop.is_set():
            restart = asyncio.Event()
            journal = Journal(self.journal_path)
            agent = Agent(self.config, self.panel.devices, journal, on_restart=restart.set)
            try:
                await agent.start()
                self.agent = agent
                waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(restart.wait())]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
            finally:
                self.agent = None
                await agent.stop()
                journal.close()
            if restart.is_set() and not stop.is_set():
                log.info("demo.kiosk_restarting", terminal_id=self.terminal_id)


# -- the customers -----------------------------------------------------------------------


@dataclass
class Tally:
    """What the customers did, logged every minute."""

    visits: int = 0
    cash: int = 0
    card: int = 0
    completed: int = 0
    held: int = 0
    unanswered: int = 0
    declined: int = 0
    refused: int = 0
    collections: int = 0

    def count(self, outcome: PaymentOutcome) -> None:
        if not outcome.answered:
            self.unanswered += 1
        elif outcome.status == "held":
            self.held += 1
        elif outcome.status == "completed":
            self.completed += 1


class Customers:
    """Plays customers at the background kiosks."""

    def __init__(
        self, plan: FleetPlan, rng: random.Random, pace_s: float, collect_at: int = COLLECT_AT
    ) -> None:
        if not plan.payable:
            raise ValueError("the fleet file lists no payable numbers")
        self.plan = plan
        self.rng = rng
        self.pace_s = pace_s
        self.collect_at = collect_at
        self.tally = Tally()

    async def loop(self, kiosk: SimKiosk, stop: asyncio.Event) -> None:
        """A customer every ``pace_s`` on average (uniformly 0.5-1.5 ×), until ``stop``.
        A customer in the middle of a payment finishes it first."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.pace_s * self.rng.uniform(0.5, 1.5)):
                    await stop.wait()
            if stop.is_set() or not kiosk.online:
                continue
            try:
                await self.visit(kiosk)
            except Exception:  # one odd visit must not end the kiosk's customers
                log.exception("demo.customer_failed", terminal_id=kiosk.terminal_id)

    async def visit(self, kiosk: SimKiosk) -> None:
        agent = kiosk.agent
        if agent is None:
            return
        self.tally.visits += 1
        unknown = bool(self.plan.unknown) and self.rng.random() < UNKNOWN_SHARE
        msisdn = self.rng.choice(self.plan.unknown if unknown else self.plan.payable)
        try:
            if not unknown:
                # What the touch UI does before taking money.
                check = await agent.customer.check_number(msisdn)
                if not check.payable:
                    return  # terminated since the fleet file was written: walks away
            if self.rng.random() < CASH_SHARE:
                outcome = await self._cash(kiosk, agent, msisdn)
            else:
                outcome = await self._card(kiosk, agent, msisdn)
        except Refused as exc:
            if exc.code == "card_declined":
                self.tally.declined += 1
            else:
                self.tally.refused += 1
            log.info("demo.customer_refused", terminal_id=kiosk.terminal_id, code=exc.code)
            return
        except FlowError as exc:
            self.tally.refused += 1
            log.info("demo.customer_turned_away", terminal_id=kiosk.terminal_id, why=exc.message)
            return
        self.tally.count(outcome)
        log.info(
            "demo.payment",
            terminal_id=kiosk.terminal_id,
            serial=outcome.serial,
            amount=outcome.amount,
            status=outcome.status,
            held_reason=outcome.held_reason,
        )
        if kiosk.panel.cash.box_count >= self.collect_at:
            await self._collect(kiosk, agent)

    async def _cash(self, kiosk: SimKiosk, agent: Agent, msisdn: str) -> PaymentOutcome:
        flows = agent.customer
        values, weights = zip(*NOTE_WEIGHTS.items(), strict=True)
        notes = self.rng.choices(values, weights, k=self.rng.randint(1, 3))
        await flows.start_cash(msisdn)
        try:
            for value in notes:
                kiosk.panel.insert_notes(value)
            outcome = await flows.confirm_cash()
        except BaseException:
            # As the touch UI's cancel does: notes still in escrow go back.
            if agent.journal.cash_in() is not None:
                with contextlib.suppress(FlowError):
                    await flows.cancel_cash()
            raise
        self.tally.cash += 1
        return outcome

    async def _card(self, kiosk: SimKiosk, agent: Agent, msisdn: str) -> PaymentOutcome:
        bin_ = self.rng.choice(CARD_BINS)
        length = self.rng.choice((16, 19))
        pan = bin_ + "".join(str(self.rng.randrange(10)) for _ in range(length - len(bin_)))
        declined = self.rng.random() < DECLINED_SHARE
        if declined:
            kiosk.panel.card_declined("insufficient_funds")
        kiosk.panel.insert_card(pan)
        try:
            outcome = await agent.customer.card_payment(msisdn, self.rng.choice(CARD_AMOUNTS))
        finally:
            if declined:
                kiosk.panel.card_declined(None)
        self.tally.card += 1
        return outcome

    async def _collect(self, kiosk: SimKiosk, agent: Agent) -> None:
        """A technician swaps the full box for an empty one and reports what was in it."""
        counted = kiosk.panel.cash.empty_box()
        new_box = f"{kiosk.terminal_id}-B{agent.clock.now_ms()}"  # never reused
        answer = await agent.collect_cash(counted, "demo.technician", new_box)
        self.tally.collections += 1
        log.info(
            "demo.cash_collected",
            terminal_id=kiosk.terminal_id,
            notes=sum(counted.values()),
            new_box_id=new_box,
            answered=answer is not None and answer.ok,
        )


# -- the process ---------------------------------------------------------------------------


def kiosk_configs(plan: FleetPlan, server: str, management_port: int | None) -> list[KioskConfig]:
    """Loopback plaintext, as ``teleserve kiosk`` connects to a gateway on loopback."""
    endpoint = parse_server(server, management_port)
    return [
        KioskConfig(
            terminal_id=k.terminal_id,
            master_key=read_key_file(k.key_file),
            endpoint=endpoint,
            device_mode="sim",
        )
        for k in plan.background
    ]


async def run_customers(
    plan: FleetPlan,
    configs: Sequence[KioskConfig],
    stop: asyncio.Event,
    *,
    pace_s: float,
    rng: random.Random,
    collect_at: int = COLLECT_AT,
) -> Tally:
    """Host the background kiosks and their customers until ``stop`` is set; the
    customers finish their payments, then the agents sign off."""
    data_dirs = {k.terminal_id: k.data_dir for k in plan.kiosks}
    kiosks = [SimKiosk(config, data_dirs[config.terminal_id]) for config in configs]
    customers = Customers(plan, rng, pace_s, collect_at)
    agents_stop = asyncio.Event()
    agents = [asyncio.create_task(k.run(agents_stop), name=k.terminal_id) for k in kiosks]
    loops = [asyncio.create_task(customers.loop(k, stop)) for k in kiosks]
    log.info("demo.customers_started", kiosks=len(kiosks), pace_s=pace_s)
    tally = asyncio.create_task(_log_tally(customers.tally, stop))
    try:
        await stop.wait()
        # A payment under way ends before its agent stops, within the demo's patience
        # (``demo.fleet.STOP_TIMEOUT_S``); one cut short is the journal's to finish.
        _, late = await asyncio.wait(loops, timeout=10)
        for task in late:
            task.cancel()
    finally:
        for task in [*loops, tally]:
            task.cancel()
        agents_stop.set()
        await asyncio.gather(*agents, *loops, tally, return_exceptions=True)
    log.info("demo.customers_stopped", **asdict(customers.tally))
    return customers.tally


async def _log_tally(tally: Tally, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TALLY_EVERY_S):
                await stop.wait()
        log.info("demo.customers_tally", **asdict(tally))


async def _watch_parent(parent: int, stop: asyncio.Event) -> None:
    """Stop when ``teleserve demo`` is gone (killed without a chance to stop us)."""
    while not stop.is_set():
        if os.getppid() != parent:
            log.warning("demo.parent_gone")
            stop.set()
        await asyncio.sleep(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m teleserve.demo.customers",
        description="Background kiosks with simulated customers (started by teleserve demo).",
    )
    parser.add_argument("--fleet", type=Path, required=True, help="the demo's fleet file")
    parser.add_argument("--server", default="127.0.0.1", help="HOST[:PORT] (business)")
    parser.add_argument("--management-port", type=int, default=None)
    parser.add_argument("--pace", type=float, default=6.0, help="seconds between customers")
    parser.add_argument("--collect-at", type=int, default=COLLECT_AT, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=None, help="random seed (repeatable runs)")
    args = parser.parse_args(argv)
    if args.pace <= 0:
        parser.error("--pace must be positive")
    configure_logging("INFO", json_output=True)  # to a log file: one JSON object a line
    try:
        plan = FleetPlan.load(args.fleet)
        configs = kiosk_configs(plan, args.server, args.management_port)
    except (OSError, ValueError, KeyError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not plan.payable:
        print("error: the fleet file lists no payable numbers", file=sys.stderr)
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(_watch_parent(os.getppid(), stop))
        try:
            await run_customers(
                plan,
                configs,
                stop,
                pace_s=args.pace,
                rng=random.Random(args.seed),
                collect_at=args.collect_at,
            )
        finally:
            watcher.cancel()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
