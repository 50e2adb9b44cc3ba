"""kill -9 of the server during a burst of cash payments (the issue's bar), with real
processes on loopback, on both databases.

Terminals here behave as PROTOCOL.md asks of a kiosk: each payment's body is journaled
before it is first sent and is resent — same serial, same bytes — on a new connection
until it is answered. The server is killed with SIGKILL in the middle of the burst and
started again. Afterwards every payment is recorded exactly once, each answer a resend
got is the recorded one, the ledger balances, and each box's expected notes equal the
notes stacked into it.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from teleserve.core import migrate
from teleserve.core.actor import SYSTEM
from teleserve.core.db import make_engine
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.demo.seed import seed_database
from teleserve.gateway.body import encode_body, parse_body
from teleserve.gateway.frame import Header
from teleserve.gateway.mac import derive_session_key
from teleserve.gateway.reply import signed_frame
from teleserve.gateway.stream import FrameDecoder
from teleserve.inventory.models import Subscription
from teleserve.payments import service as payments
from teleserve.payments.models import payment_table
from teleserve.terminals import deposits
from teleserve.terminals import service as terminals

BACKEND = os.environ.get("TELESERVE_TEST_DB", "sqlite")
PG_ADMIN = os.environ.get(
    "TELESERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TERMINALS = 4
PAYMENTS_EACH = 40
BOX = "BOX-E2E"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own (the server process is started on it)."""
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2e.db'}"
        return
    name = f"teleserve_e2e_{os.environ.get('TELESERVE_TEST_DB_SUFFIX', '')}"
    name += os.environ.get("PYTEST_XDIST_WORKER", "main")
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@dataclass
class Setup:
    url: str
    folder: Path
    keys: dict[str, bytes]
    numbers: list[str]


@pytest.fixture
def setup(database: str, tmp_path: Path) -> Iterator[Setup]:
    settings = Settings(
        mode=Mode.demo,
        database_url=database,
        audit_checkpoint_dir=tmp_path / "checkpoints",
        audit_signing_key_file=tmp_path / "audit.key",
    )
    use_settings(settings)
    migrate.upgrade(database)
    engine = make_engine(database)
    try:
        seed_database(engine, customers=40, progress=False)
        keys: dict[str, bytes] = {}
        with UnitOfWork(engine, SYSTEM) as uow:
            for n in range(TERMINALS):
                made = terminals.register_terminal(
                    uow, {"terminal_id": f"E2E-{n}", "site": "GZ01", "device_mode": "sim"}
                )
                keys[f"E2E-{n}"] = bytes.fromhex(made.master_key)
            uow.commit()
        with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
            numbers = list(
                uow.session.scalars(
                    select(Subscription.service_number).where(
                        Subscription.kind == "mobile", Subscription.status != "terminated"
                    )
                )
            )
    finally:
        engine.dispose()
    yield Setup(database, tmp_path, keys, numbers)
    use_settings(None)


class Server:
    """``teleserve serve`` as deployed, on fixed loopback ports so it can be restarted."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        teleserve = Path(sys.executable).with_name("teleserve")
        folder = self.setup.folder
        sqlite = self.setup.url.startswith("sqlite")
        role = ["--role", "all", "--port", str(_free_port())] if sqlite else ["--role", "gateway"]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TELESERVE_")},
            "TELESERVE_MODE": "demo",
            "TELESERVE_DATABASE_URL": self.setup.url,
            "TELESERVE_AUDIT_CHECKPOINT_DIR": str(folder / "checkpoints"),
            "TELESERVE_AUDIT_SIGNING_KEY_FILE": str(folder / "audit.key"),
            "TELESERVE_GATEWAY_BUSINESS_PORT": str(self.port),
            "TELESERVE_GATEWAY_MANAGEMENT_PORT": str(_free_port()),
        }
        self.starts += 1
        log = (folder / f"server-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [str(teleserve), "serve", *role], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, (folder / f"server-{self.starts}.log").read_text()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            assert time.monotonic() < deadline, "the gateway did not listen"
            time.sleep(0.1)

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


@dataclass
class Journaled:
    serial: int
    body: bytes
    notes: int  # 100-yuan notes stacked
    answers: list[dict[str, Any]] = field(default_factory=list)


class Kiosk(threading.Thread):
    """A terminal that journals each payment before sending it and resends it, same
    serial and bytes, until it is answered — across lost connections."""

    def __init__(self, terminal_id: str, key: bytes, port: int, numbers: list[str]) -> None:
        super().__init__(daemon=True)
        self.terminal_id, self.master_key, self.port = terminal_id, key, port
        rng = random.Random(terminal_id)
        self.journal = [
            Journaled(
                serial,
                encode_body(
                    {
                        "msisdn": rng.choice(numbers),
                        "amount": 10000 * (count := rng.randint(1, 3)),
                        "notes": [{"value": 10000, "count": count}],
                        "cash_box_id": BOX,
                        "txn_time_ms": int(time.time() * 1000),
                    }
                ),
                count,
            )
            for serial in range(10, 10 + PAYMENTS_EACH)
        ]
        self.reconnects = 0
        self.failure: BaseException | None = None
        self.sock: socket.socket | None = None
        self.answered = threading.Event()

    def _frame(self, serial: int, serv_type: int, body: bytes, key: bytes, sid: str) -> bytes:
        header = Header(
            self.terminal_id, serial, serv_type, "Q", True, "00000", int(time.time() * 1000), sid
        )
        return signed_frame(header, body, key)

    def _ask(self, raw: bytes) -> tuple[str, dict[str, Any]]:
        assert self.sock is not None
        self.sock.sendall(raw)
        decoder = FrameDecoder()
        while (item := decoder.next()) is None:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            decoder.feed(data)
        body = parse_body(item.body)  # type: ignore[union-attr]
        assert isinstance(body, dict)
        return item.header.err_number, body  # type: ignore[union-attr]

    def _sign_on(self) -> tuple[bytes, str]:
        self.sock = socket.create_connection(("127.0.0.1", self.port), 2)
        self.sock.settimeout(15)
        nonce = secrets.token_bytes(16)
        body = {"client_nonce": nonce.hex(), "software_version": "e2e", "last_serial": 0}
        err, answer = self._ask(self._frame(1, 1, encode_body(body), self.master_key, "00000000"))
        assert err == "00000", answer
        key = derive_session_key(self.master_key, nonce, bytes.fromhex(answer["server_nonce"]))
        return key, answer["session_id"]

    def run(self) -> None:
        try:
            pending = list(self.journal)
            deadline = time.monotonic() + 120
            while pending:
                assert time.monotonic() < deadline, "payments still unanswered"
                try:
                    key, sid = self._sign_on()
                    while pending:
                        entry = pending[0]
                        err, body = self._ask(self._frame(entry.serial, 2001, entry.body, key, sid))
                        if err.startswith("9"):
                            time.sleep(0.05)  # busy / internal: resend the same bytes
                            continue
                        assert err == "00000", (entry.serial, err, body)
                        entry.answers.append(body)
                        pending.pop(0)
                except (OSError, ConnectionError):
                    self.reconnects += 1
                    time.sleep(0.1)  # the server is down: back off, then resend
                finally:
                    if self.sock is not None:
                        self.sock.close()
            # One more resend of a payment answered before the kill: the recorded answer.
            key, sid = self._sign_on()
            first = self.journal[0]
            err, body = self._ask(self._frame(first.serial, 2001, first.body, key, sid))
            first.answers.append(body)
            self.sock.close()  # type: ignore[union-attr]
        except BaseException as exc:
            self.failure = exc


def test_kill_9_during_a_burst_loses_and_doubles_no_payment(setup: Setup):
    server = Server(setup)
    server.start()
    try:
        kiosks = [Kiosk(t, k, server.port, setup.numbers) for t, k in setup.keys.items()]
        for kiosk in kiosks:
            kiosk.start()
        # Kill mid-burst: once some payments are answered and others are not.
        deadline = time.monotonic() + 60
        while sum(bool(e.answers) for k in kiosks for e in k.journal) < TERMINALS * 5:
            assert time.monotonic() < deadline, "no payments answered before the kill"
            time.sleep(0.01)
        server.kill()
        time.sleep(0.5)
        server.start()
        for kiosk in kiosks:
            kiosk.join(150)
            assert not kiosk.is_alive(), "a terminal is still resending"
            assert kiosk.failure is None, repr(kiosk.failure)
        assert any(kiosk.reconnects for kiosk in kiosks), "the kill did not cut a connection"
    finally:
        server.stop()

    engine = make_engine(setup.url)
    try:
        with engine.connect() as conn:
            recorded = conn.scalar(
                select(func.count())
                .select_from(payment_table)
                .where(payment_table.c.channel == "kiosk_cash")
            )
        assert recorded == TERMINALS * PAYMENTS_EACH  # each payment exactly once
        with UnitOfWork(engine, SYSTEM) as uow:
            assert payments.check_ledger(uow) == []
            for kiosk in kiosks:
                stacked = sum(entry.notes for entry in kiosk.journal)
                expected = deposits.expected_notes(uow.connection, kiosk.terminal_id, BOX)
                assert expected == [{"value": 10000, "count": stacked}]
                found = payments.terminal_payments(
                    uow.connection, kiosk.terminal_id, [e.serial for e in kiosk.journal]
                )
                for entry in kiosk.journal:
                    answer = entry.answers[0]
                    assert answer["status"] in ("completed", "held")
                    assert found[entry.serial].receipt_no == answer["txn_id"]
                # The resend after everything: byte-for-byte the first answer.
                first = kiosk.journal[0]
                assert first.answers[-1] == first.answers[0]
    finally:
        engine.dispose()
