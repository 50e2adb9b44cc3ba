"""The SMTP sender against a small SMTP server on loopback (no network, no mocks)."""

from __future__ import annotations

import email
import email.policy
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from teleserve.core.db import read_engine
from teleserve.core.outbox import OutboxMessage
from teleserve.core.worker import run_once
from teleserve.notify import senders
from teleserve.notify import service as notify
from teleserve.notify.models import Channel, NotifyMessage
from teleserve.notify.senders import SmtpConfig, SmtpSender


class _Session(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, RSET, QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        server: _SmtpServer = self.server  # type: ignore[assignment]
        self.reply("220 test ESMTP")
        recipients: list[str] = []
        while line := self.rfile.readline():
            command = line.decode().strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-test")
                self.reply("250 8BITMIME")
            elif verb == "MAIL":
                recipients = []
                self.reply("250 OK")
            elif verb == "RCPT":
                address = command.split(":", 1)[1].strip(" <>")
                if address.startswith("bounce@"):
                    self.reply("550 5.1.1 no such user")
                else:
                    recipients.append(address)
                    self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 go ahead")
                data = b""
                while (chunk := self.rfile.readline()) != b".\r\n":
                    data += chunk
                server.received.append((recipients, data))
                self.reply("250 OK queued")
            elif verb == "RSET":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 not implemented")


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Session)
        self.received: list[tuple[list[str], bytes]] = []


@pytest.fixture
def smtp_server() -> Iterator[_SmtpServer]:
    server = _SmtpServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _use_smtp(port: int) -> None:
    config = SmtpConfig(
        host="127.0.0.1", port=port, sender="noreply@teleserve.test", security="none", timeout=5
    )
    senders.use_sender(Channel.email, SmtpSender(config))


def _queue(make_uow, to: str) -> str:
    with make_uow() as uow:
        message_id = notify.queue_email(
            uow,
            to=to,
            template="payment_received",
            params={"number": "13800138000", "amount": 5000, "balance": 6000},
            locale="zh-CN",
        )
        uow.commit()
    return message_id


def _row(engine, message_id: str):
    with read_engine(engine).connect() as conn:
        return conn.execute(select(NotifyMessage).where(NotifyMessage.id == message_id)).one()


def test_email_goes_out_by_smtp_in_utf8(make_uow, engine, smtp_server):
    _use_smtp(smtp_server.server_address[1])
    message_id = _queue(make_uow, "zhangsan@example.com")
    assert run_once(engine).processed == 1
    ((recipients, data),) = smtp_server.received
    assert recipients == ["zhangsan@example.com"]
    mail = email.message_from_bytes(data, policy=email.policy.default)
    assert mail["Subject"] == "缴费成功"
    assert mail["From"] == "noreply@teleserve.test"
    assert mail["Message-ID"] == f"<{message_id}@teleserve.test>"
    body = mail.get_content()
    assert "缴费50.00元" in body and "138****8000" in body
    row = _row(engine, message_id)
    assert (row.status, row.provider, row.provider_ref) == (
        "sent",
        "smtp",
        f"<{message_id}@teleserve.test>",
    )


def test_a_refused_recipient_fails_at_once(make_uow, engine, smtp_server):
    _use_smtp(smtp_server.server_address[1])
    message_id = _queue(make_uow, "bounce@example.com")
    assert run_once(engine).dead == 1
    row = _row(engine, message_id)
    assert row.status == "failed" and "refused the recipient" in row.error
    assert smtp_server.received == []


def test_an_unreachable_server_is_retried(make_uow, engine, frozen_clock):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _use_smtp(port)
    message_id = _queue(make_uow, "zhangsan@example.com")
    assert run_once(engine).retried == 1
    assert _row(engine, message_id).status == "queued"
    with read_engine(engine).connect() as conn:
        outbox = conn.execute(select(OutboxMessage)).one()
    assert outbox.status == "pending" and "ConnectionRefusedError" in outbox.last_error


def test_smtp_settings_select_the_smtp_sender(settings):
    from teleserve.core.settings import Mode

    assert SmtpConfig.from_settings(settings) is None
    configured = settings.model_copy(
        update={"mode": Mode.production, "smtp_host": "mail.example.com"}
    )
    sender = senders.sender_for(Channel.email, configured)
    assert isinstance(sender, SmtpSender) and sender.config.host == "mail.example.com"
    assert sender.config.port == 587 and sender.config.security == "starttls"
    assert senders.channel_available(Channel.email, configured)
    assert not senders.channel_available(Channel.sms, configured)
