"""Tables of the terminals domain: the registry of kiosks, their master keys, and the
serial records TSP/1 answers resends from (``../shared/PROTOCOL.md``, "Serial numbers,
retransmission and idempotency").

A terminal belongs to a site (an iam org unit of level ``site`` or ``hall``) and copies
the site's path into ``org_path`` for scoping, like every other owned row. Cross-domain
ids (the site) are plain strings: no foreign key leaves the domain.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base, table_of
from teleserve.core.ids import new_id


class TerminalStatus(StrEnum):
    """``in_service``: everything allowed. ``out_of_service``: the terminal signs on,
    reports and drains its journal, but takes no new customer business (TSP ``10009``).
    ``disabled``: refused at the door (``10008``) until staff enable it again.
    ``decommissioned``: refused for good; its keys are ended and its id is never reused
    (its serial records are kept)."""

    in_service = "in_service"
    out_of_service = "out_of_service"
    disabled = "disabled"
    decommissioned = "decommissioned"


class DeviceMode(StrEnum):
    """The kiosk agent's device drivers (DESIGN.md section 8). TSP/1 SIGN_ON calls the
    second ``hardware``."""

    sim = "sim"
    xfs4iot = "xfs4iot"


class RecordKind(StrEnum):
    """What a serial record holds: the answer to a state-changing request, or a REVERSAL
    marker left under a payment serial the server had not seen yet (the payment, when it
    arrives, is recorded ``held`` with ``reversed_original``)."""

    answer = "answer"
    reversal_marker = "reversal_marker"


class Terminal(Base):
    __tablename__ = "terminal"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    # The id on the wire (TSP/1 header): unique for ever, decommissioned ones included,
    # because serial records and payments name terminals by it.
    terminal_id: Mapped[str] = mapped_column(String(16), unique=True)
    site_id: Mapped[str] = mapped_column(String(32), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(String(500), default="")
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str] = mapped_column(String(200), default="")
    status_changed_at: Mapped[datetime]
    device_mode: Mapped[str] = mapped_column(String(10))
    # Reported by the terminal (SIGN_ON, STATUS_REPORT); empty until it first reports.
    software_version: Mapped[str] = mapped_column(String(64), default="")
    # The configuration version the server holds for it (CONFIG_PULL compares).
    config_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class TerminalMasterKey(Base):
    """One master key of a terminal, AES-GCM encrypted (``core.crypto``, bound to the
    terminal id). ``valid_until`` is NULL for the current key; a rotation sets it on the
    previous key to the end of the grace period, and decommissioning to the moment it
    happened. Keys are kept (encrypted) after they end: their check values tell staff
    which key a kiosk holds."""

    __tablename__ = "terminal_master_key"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    terminal_pk: Mapped[str] = mapped_column(String(32), ForeignKey("terminal.id"), index=True)
    key_enc: Mapped[str] = mapped_column(String(255))
    # Key check value: the first 3 bytes of HMAC-SHA256(key, "TSP1-kcv"), hex. Lets a
    # technician compare the key a kiosk holds with the server's without showing it.
    check_value: Mapped[str] = mapped_column(String(6))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    valid_until: Mapped[datetime | None]


class TerminalSerialRecord(Base):
    """The recorded answer to a state-changing request, under ``(terminal_id, serial)``.

    On the money hot path: written and read only through ``terminals.serials`` (Core,
    batched). No foreign key to ``terminal``: the gateway has already looked the
    terminal up, and on PostgreSQL a key would share-lock the terminal row on every
    insert. ``answer`` is the answer body's exact JSON text (all items, for a multi-frame
    answer), so a resend carries the same bytes."""

    __tablename__ = "terminal_serial_record"

    terminal_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    serv_type: Mapped[int] = mapped_column(Integer)
    body_sha256: Mapped[str] = mapped_column(String(64))
    err_number: Mapped[str] = mapped_column(String(5))
    answer: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]

    # The retention purge looks for old rows whatever their terminal.
    __table_args__ = (Index("ix_terminal_serial_record_created_at", "created_at"),)


class CashDeposit(Base):
    """The notes of one recorded CASH_PAYMENT (2001), whatever its status: what its cash
    box is expected to hold (PROTOCOL.md, "Money requests are always recorded"). Written
    by the gateway's money path in the payment's own transaction (Core, batched; no
    foreign keys, like the serial records). ``notes`` is the canonical JSON list
    ``[{"value": v, "count": n}]`` sorted by value, as the terminal reported them;
    ``amount`` is their sum, which is what was recorded (the notes are the truth)."""

    __tablename__ = "terminal_cash_deposit"

    payment_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    terminal_id: Mapped[str] = mapped_column(String(16))
    box_id: Mapped[str] = mapped_column(String(64))
    serial: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    notes: Mapped[str] = mapped_column(Text)
    business_date: Mapped[date]
    created_at: Mapped[datetime]

    # A box's expected contents: every deposit of (terminal, box).
    __table_args__ = (Index("ix_terminal_cash_deposit_box", "terminal_id", "box_id"),)


terminal_table = table_of(Terminal)
key_table = table_of(TerminalMasterKey)
serial_table = table_of(TerminalSerialRecord)
deposit_table = table_of(CashDeposit)
