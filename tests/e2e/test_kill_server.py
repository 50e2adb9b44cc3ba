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

import os
import random
import secrets
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import func, select

from teleserve.core.actor import SYSTEM
from teleserve.core.db import make_engine
from teleserve.core.outbox import OutboxMessage
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.body import encode_body, parse_body
from teleserve.gateway.frame import Header
from teleserve.gateway.mac import derive_session_key
from teleserve.gateway.reply import signed_frame
from teleserve.gateway.stream import FrameDecoder
from teleserve.payments import service as payments
from teleserve.payments.models import payment_table
from teleserve.terminals import deposits

from .support import TERMINALS, Server, Setup, database, setup  # noqa: F401 (fixtures)

PAYMENTS_EACH = 40
BOX = "BOX-E2E"


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


@pytest.mark.parametrize(
    ("fronts", "victim"),
    [(0, "server"), (2, "server"), (2, "fronts")],
    ids=["one-process", "fronts-kill-server", "fronts-kill-the-fronts"],
)
def test_kill_9_during_a_burst_loses_and_doubles_no_payment(
    setup: Setup,  # noqa: F811
    fronts: int,
    victim: str,
):
    """The whole server killed (with front processes: the serve process, whose fronts
    then exit on their own), or the front processes killed while the serve process and
    its money writer run on (it starts new fronts; every connection was on one of the
    killed ones)."""
    server = Server(setup, fronts)
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
        if victim == "server":
            server.kill()
            time.sleep(0.5)
            server.start()
        else:
            pids = server.front_pids()
            assert len(pids) == fronts
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
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
        # Nothing in this release subscribes to payments.recorded: the serve process
        # writes those events done (core.outbox), none waits for the worker.
        with engine.connect() as conn:
            events = [
                e
                for e in conn.execute(
                    select(
                        OutboxMessage.status,
                        OutboxMessage.done_at,
                        OutboxMessage.created_at,
                        OutboxMessage.payload,
                    ).where(OutboxMessage.topic == "payments.recorded")
                )
                if e.payload["channel"] == "kiosk_cash"
            ]
        assert len(events) == recorded
        assert {(e.status, e.done_at == e.created_at) for e in events} == {("done", True)}
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
