"""Output models of the notify domain: what listings show (recipients always masked)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class MessageView(BaseModel):
    """A notification as staff see it: masked recipient, text with secrets masked."""

    model_config = ConfigDict(frozen=True)

    id: str
    channel: str
    recipient: str  # masked: 138****8000, z***@example.com
    template: str
    locale: str
    subject: str | None
    body: str | None
    status: str
    attempts: int
    provider: str | None
    provider_ref: str | None
    error: str | None
    customer_id: str | None
    org_path: str | None
    created_at: datetime
    sent_at: datetime | None


class RecordedMessage(BaseModel):
    """What the development recorder delivered, in full (the demo "phone screen")."""

    model_config = ConfigDict(frozen=True)

    id: str
    channel: str
    recipient: str  # masked, like every listing
    template: str
    locale: str
    text: str  # exactly what a real phone or mailbox would have shown
    sent_at: datetime
