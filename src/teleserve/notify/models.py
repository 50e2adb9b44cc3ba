"""Tables of the notify domain: one row per outbound SMS or email."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base
from teleserve.core.ids import new_id


class Channel(StrEnum):
    sms = "sms"
    email = "email"


class MessageStatus(StrEnum):
    queued = "queued"  # waiting for (another) delivery attempt
    sent = "sent"  # handed to the sender, which accepted it
    failed = "failed"  # given up: its outbox message is dead (see ``error``)


class NotifyMessage(Base):
    __tablename__ = "notify_message"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    channel: Mapped[str] = mapped_column(String(10))
    # Stored as given (normalised), never shown unmasked: see ``service._view``.
    recipient: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(50))
    # Template parameters; secret ones (one-time codes) are stored encrypted.
    params: Mapped[dict[str, Any]]
    locale: Mapped[str] = mapped_column(String(10))
    # The rendered text with secrets masked, filled in at delivery.
    subject: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default=MessageStatus.queued)
    attempts: Mapped[int] = mapped_column(default=0)
    provider: Mapped[str | None] = mapped_column(String(30))
    provider_ref: Mapped[str | None] = mapped_column(String(200))
    # What the development recorder "delivered", in full (demo mode and tests only).
    transcript: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    customer_id: Mapped[str | None] = mapped_column(String(32))
    org_path: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_notify_message_org_created", "org_path", "created_at"),
        Index("ix_notify_message_recipient_created", "recipient", "created_at"),
        Index("ix_notify_message_customer", "customer_id"),
    )
