"""kill -9 of the kiosk agent between stacking the notes and getting the answer (the
issue's bar), with real processes on loopback, on both databases.

The real server and the real ``teleserve kiosk`` (sim devices, touch UI on loopback): a
customer inserts two notes through the demo panel and presses Pay. The server is frozen
(SIGSTOP) so the answer cannot come; once the agent's journal shows the payment stacked
and sent but unanswered, the agent is killed with SIGKILL and the server thawed. A new
agent on the same journal resends the payment — same serial, same bytes — until it is
answered. Afterwards the payment is recorded exactly once, the ledger balances, and the
box's expected notes are the two notes stacked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from teleserve.core.actor import SYSTEM
from teleserve.core.db import make_engine
from teleserve.core.uow import UnitOfWork
from teleserve.payments import service as payments
from teleserve.payments.models import payment_table
from teleserve.terminals import deposits

from .support import Server, Setup, database, free_port, setup  # noqa: F401 (fixtures)

TERMINAL = "E2E-0"  # registered by the setup fixture


class Agent:
    """``teleserve kiosk`` as a real process on a journal folder that outlives it."""

    def __init__(self, setup: Setup, server: Server) -> None:  # noqa: F811
        self.folder = setup.folder / "kiosk"
        self.key_file = setup.folder / f"{TERMINAL}.key"
        self.key_file.write_text(setup.keys[TERMINAL].hex())
        self.key_file.chmod(0o600)
        self.server = server
        self.ui_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def start(self) -> None:
        teleserve = Path(sys.executable).with_name("teleserve")
        self.starts += 1
        log = (self.folder.parent / f"agent-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(teleserve), "kiosk", "--terminal-id", TERMINAL,
                "--key-file", str(self.key_file),
                "--server", f"127.0.0.1:{self.server.port}",
                "--management-port", str(self.server.management_port),
                "--ui-port", str(self.ui_port), "--devices", "sim",
                "--data-dir", str(self.folder),
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("TELESERVE_")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, self.log()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/state", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, "the kiosk UI did not come up\n" + self.log()
            time.sleep(0.2)

    def log(self) -> str:
        return (self.folder.parent / f"agent-{self.starts}.log").read_text()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def payments_in_journal(self) -> list[tuple[int, str, str | None]]:
        """(serial, state, answer) of the journal's CASH_PAYMENTs, read as a bystander."""
        path = self.folder / "journal.db"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return list(
                conn.execute("SELECT serial, state, answer FROM entry WHERE serv_type = 2001")
            )


def _eventually(check: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)
    return found


@pytest.fixture
def running(setup: Setup) -> Iterator[tuple[Server, Agent]]:  # noqa: F811
    server = Server(setup)
    server.start()
    agent = Agent(setup, server)
    try:
        agent.start()
        yield server, agent
    finally:
        agent.stop()
        if server.process is not None and server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)
        server.stop()


def test_kill_9_of_the_agent_between_stacking_and_the_answer(
    setup: Setup,  # noqa: F811
    running: tuple[Server, Agent],
):
    server, agent = running
    number = setup.numbers[0]
    with httpx.Client(base_url=agent.url, timeout=30, follow_redirects=True) as http:

        def number_accepted() -> bool:  # the agent signs on and reports first
            return http.post("/pay/cash", data={"msisdn": number}).url.path == "/pay/cash/confirm"

        _eventually(number_accepted, 60, "the kiosk never took a number:\n" + agent.log())
        assert http.post("/pay/cash/confirm").url.path == "/pay/cash/insert"
        for _ in range(2):
            result = http.post("/panel/note", data={"value": "10000"})
            assert result.url.query == b"result=ok"
        assert http.get("/pay/cash/escrow").json()["total_fen"] == 20000

        assert server.process is not None
        server.process.send_signal(signal.SIGSTOP)  # no answer can come now

        def press_pay() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the agent dies under it
                http.post("/pay/cash/confirm-notes", timeout=60)

        pay = threading.Thread(target=press_pay, daemon=True)
        pay.start()
        sent = _eventually(
            lambda: [e for e in agent.payments_in_journal() if e[1] == "pending"],
            30,
            "the payment was never stacked and sent",
        )
        assert isinstance(sent, list)
        [(serial, _state, _answer)] = sent
        agent.kill()  # between stacking the notes and getting the answer
        server.process.send_signal(signal.SIGCONT)
        pay.join(30)

    agent.start()  # the same journal: it resends the same serial and bytes
    answered = _eventually(
        lambda: [e for e in agent.payments_in_journal() if e[1] == "answered"],
        60,
        "the resent payment was never answered:\n" + agent.log(),
    )
    assert isinstance(answered, list)
    [(answered_serial, _state, answer)] = answered
    assert answered_serial == serial and answer is not None

    engine = make_engine(setup.url)
    try:
        with engine.connect() as conn:
            rows = list(
                conn.execute(select(payment_table).where(payment_table.c.terminal_id == TERMINAL))
            )
        [row] = rows  # recorded exactly once
        assert (row.terminal_serial, row.amount, row.channel) == (str(serial), 20000, "kiosk_cash")
        assert row.receipt_no in answer
        with UnitOfWork(engine, SYSTEM) as uow:
            assert payments.check_ledger(uow) == []
            box = deposits.expected_notes(uow.connection, TERMINAL, row.source_id.split("/", 1)[1])
            assert box == [{"value": 10000, "count": 2}]
    finally:
        engine.dispose()
