"""Use cases of the notify domain: queue an SMS or email, deliver it, list what was sent.

``queue_sms`` / ``queue_email`` validate the request, write the message row and emit the
outbox message ``notify.deliver`` in the caller's transaction: a notification exists, and
goes out, exactly when the business change that caused it commits. They check no
permission of their own — other domains call them from use cases that already did (an OTP
request at a kiosk, a payment) — but they audit what was queued, with the recipient masked.

``deliver`` runs in the outbox worker (``teleserve.notify.tasks``). It reads the row and
talks to the sender *before* its first write, because on SQLite a unit of work takes the
one write lock at its first statement and a slow mail server must not hold up payments.
Delivery is at least once: if the commit after a successful send is lost, the message is
sent again (the SMTP Message-ID stays the same so a mailbox can tell).

Listings need ``notify.read`` and are scoped to the actor's organisation subtree; a
message queued without an ``org_path`` (e.g. an OTP before the customer is known) is
visible only to operator-wide staff.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Select, case, select, update

from teleserve.core.clock import utcnow
from teleserve.core.db import read_engine, table_of
from teleserve.core.errors import NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.masking import mask_email, mask_phone
from teleserve.core.query import FilterField, ListQuery, fetch_page, parse_datetime, where_clauses
from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import PermanentFailure
from teleserve.notify.models import Channel, MessageStatus, NotifyMessage
from teleserve.notify.schemas import MessageView, RecordedMessage
from teleserve.notify.senders import DevRecorderSender, Outgoing, sender_for
from teleserve.notify.templates import prepare, render

DELIVER_TOPIC = "notify.deliver"
MAX_LIMIT = 500

_PHONE = re.compile(r"^\+?\d{5,15}$")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


# -- recipients -----------------------------------------------------------------------


def _normalize_phone(value: str) -> str:
    """Separators removed; a mainland number given as +86 / 0086 loses its country code."""
    number = _PHONE_SEPARATORS.sub("", value.strip())
    for prefix in ("+86", "0086"):
        rest = number.removeprefix(prefix)
        if rest != number and len(rest) == 11 and rest.startswith("1"):
            return rest
    return number


def _normalize_email(value: str) -> str:
    local, _at, domain = value.strip().rpartition("@")
    return f"{local}@{domain.lower()}" if local else value.strip()


def _recipient(channel: Channel, to: str) -> str:
    if not isinstance(to, str):
        raise ValidationError(_("A message needs a recipient"))
    if channel is Channel.sms:
        number = _normalize_phone(to)
        if not _PHONE.match(number):
            raise ValidationError(_("Not a valid mobile number: {to}"), to=mask_phone(number))
        return number
    address = _normalize_email(to)
    if len(address) > 254 or not _EMAIL.match(address):
        raise ValidationError(_("Not a valid email address: {to}"), to=mask_email(address))
    return address


def mask_recipient(channel: str, recipient: str) -> str:
    return mask_email(recipient) if channel == Channel.email else mask_phone(recipient)


# -- queueing ------------------------------------------------------------------------------


def _queue(
    uow: UnitOfWork,
    channel: Channel,
    to: str,
    template: str,
    params: dict[str, Any] | None,
    locale: str | None,
    customer_id: str | None,
    org_path: str | None,
) -> str:
    recipient = _recipient(channel, to)
    _template, stored, loc = prepare(template, params, locale)
    if org_path is not None and not (org_path.startswith("/") and org_path.endswith("/")):
        raise ValidationError(_("Not an organisation path: {org_path}"), org_path=org_path)
    message = NotifyMessage(
        id=new_id(),
        channel=channel,
        recipient=recipient,
        template=template,
        params=stored,
        locale=loc,
        status=MessageStatus.queued,
        attempts=0,
        customer_id=customer_id,
        org_path=org_path,
        created_at=utcnow(),
    )
    uow.session.add(message)
    uow.flush()
    uow.emit(DELIVER_TOPIC, {"message_id": message.id}, key=message.id)
    uow.audit(
        "notify.queued",
        "notify_message",
        message.id,
        {
            "channel": str(channel),
            "template": template,
            "to": mask_recipient(channel, recipient),
            "customer_id": customer_id,
        },
    )
    return message.id


def queue_sms(
    uow: UnitOfWork,
    *,
    to: str,
    template: str,
    params: dict[str, Any] | None = None,
    locale: str | None = None,
    customer_id: str | None = None,
    org_path: str | None = None,
) -> str:
    """Queue an SMS from ``template`` in the recipient's ``locale``; returns its id."""
    return _queue(uow, Channel.sms, to, template, params, locale, customer_id, org_path)


def queue_email(
    uow: UnitOfWork,
    *,
    to: str,
    template: str,
    params: dict[str, Any] | None = None,
    locale: str | None = None,
    customer_id: str | None = None,
    org_path: str | None = None,
) -> str:
    """Queue an email from ``template`` in the recipient's ``locale``; returns its id."""
    return _queue(uow, Channel.email, to, template, params, locale, customer_id, org_path)


# -- delivery (the outbox worker) -------------------------------------------------------------


def deliver(uow: UnitOfWork, message_id: str, *, attempt: int) -> None:
    """Render the message and hand it to its channel's sender; record the outcome.

    Raises what the sender raises: ``PermanentFailure`` (the worker buries the message
    and ``mark_failed`` records why) or a transient error (the worker retries).
    """
    table = table_of(NotifyMessage)
    # Read outside the unit of work's transaction: no write lock while the sender works.
    with read_engine(uow.engine).connect() as conn:
        row = conn.execute(select(table).where(table.c.id == message_id)).first()
    if row is None:
        raise PermanentFailure(f"notification {message_id} does not exist")
    if row.status == MessageStatus.sent:
        return  # delivered before (a requeued or duplicated outbox message)
    channel = Channel(row.channel)
    text = render(row.template, row.params, row.locale)
    sender = sender_for(channel)
    delivery = sender.send(
        Outgoing(row.id, channel, row.recipient, text.subject, text.body, row.locale)
    )
    uow.connection.execute(
        update(table)
        .where(table.c.id == message_id, table.c.status != MessageStatus.sent)
        .values(
            status=MessageStatus.sent,
            subject=text.redacted_subject,
            body=text.redacted_body,
            attempts=attempt,
            provider=delivery.provider,
            provider_ref=delivery.reference,
            transcript=delivery.transcript,
            error=None,
            sent_at=utcnow(),
        )
    )


def mark_failed(uow: UnitOfWork, message_id: str, reason: str, *, attempt: int) -> None:
    """The outbox gave up on the message: it is ``failed``, and says why."""
    table = table_of(NotifyMessage)
    values: dict[str, Any] = {
        "status": MessageStatus.failed,
        "error": reason,
        "attempts": attempt,
    }
    row = uow.connection.execute(
        select(table.c.template, table.c.params, table.c.locale).where(table.c.id == message_id)
    ).first()
    if row is not None:
        try:
            text = render(row.template, row.params, row.locale)
            values.update(subject=text.redacted_subject, body=text.redacted_body)
        except Exception:  # noqa: S110 (a message that cannot render still fails, textless)
            pass
    uow.connection.execute(
        update(table)
        .where(table.c.id == message_id, table.c.status != MessageStatus.sent)
        .values(**values)
    )


# -- reading -------------------------------------------------------------------------------


def _scoped(uow: UnitOfWork, query: Select[Any]) -> Select[Any]:
    uow.actor.require("notify.read")
    if uow.actor.org_path != "/":
        # Messages with no organisation (an OTP before login) are operator-level only.
        query = query.where(uow.actor.scope(NotifyMessage.org_path))
    return query


def _check_limit(limit: int, offset: int = 0) -> None:
    if not 1 <= limit <= MAX_LIMIT or offset < 0:
        raise ValidationError(
            _("A page holds 1 to {max} messages from a non-negative offset"), max=MAX_LIMIT
        )


def _view(row: NotifyMessage) -> MessageView:
    return MessageView(
        id=row.id,
        channel=row.channel,
        recipient=mask_recipient(row.channel, row.recipient),
        template=row.template,
        locale=row.locale,
        subject=row.subject,
        body=row.body,
        status=row.status,
        attempts=row.attempts,
        provider=row.provider,
        provider_ref=row.provider_ref,
        error=row.error,
        customer_id=row.customer_id,
        org_path=row.org_path,
        created_at=row.created_at,
        sent_at=row.sent_at,
    )


def _mask_filter(to: str | None) -> str | None:
    if to is None:
        return None
    return mask_email(to) if "@" in to else mask_phone(to)


def _recipient_filter(to: str) -> str:
    return _normalize_email(to) if "@" in to else _normalize_phone(to)


def list_messages(
    uow: UnitOfWork,
    *,
    customer_id: str | None = None,
    to: str | None = None,
    channel: str | None = None,
    status: str | None = None,
    template: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[MessageView]:
    """Messages in the actor's organisation subtree, newest first (``notify.read``)."""
    _check_limit(limit, offset)
    query = _scoped(uow, select(NotifyMessage))
    if customer_id is not None:
        query = query.where(NotifyMessage.customer_id == customer_id)
    if to is not None:
        query = query.where(NotifyMessage.recipient == _recipient_filter(to))
    if channel is not None:
        query = query.where(NotifyMessage.channel == channel)
    if status is not None:
        query = query.where(NotifyMessage.status == status)
    if template is not None:
        query = query.where(NotifyMessage.template == template)
    query = query.order_by(NotifyMessage.created_at.desc(), NotifyMessage.id.desc())
    rows = uow.session.scalars(query.limit(limit).offset(offset)).all()
    return [_view(row) for row in rows]


def _channel_filter(value: str) -> str:
    return Channel(value.lower()).value  # ValueError for anything else: a clear refusal


def _recipient_value(value: str) -> str:
    if not value.strip():
        raise ValueError(value)
    return _recipient_filter(value)


# Where a message is in its delivery: queued and not tried yet, queued again after a
# failed try (the outbox retries with backoff), sent, or given up.
DELIVERY_STAGE = case(
    (NotifyMessage.status == MessageStatus.sent.value, "sent"),
    (NotifyMessage.status == MessageStatus.failed.value, "failed"),
    (NotifyMessage.attempts == 0, "queued"),
    else_="retrying",
)

# What a list of messages filters on (``core.query``). ``recipient`` takes a full phone
# number or address, normalised like the stored one: a caller who knows the number may
# find its messages, and every answer still shows it masked.
MESSAGE_FILTERS: dict[str, FilterField] = {
    "stage": FilterField(DELIVERY_STAGE),
    "channel": FilterField(NotifyMessage.channel, _channel_filter),
    "sent_at": FilterField(NotifyMessage.sent_at, parse_datetime, ordered=True),
    "created_at": FilterField(NotifyMessage.created_at, parse_datetime, ordered=True),
    "recipient": FilterField(NotifyMessage.recipient, _recipient_value),
    "customer_id": FilterField(NotifyMessage.customer_id),
}


def delivery_stage(message: MessageView) -> str:
    """Python twin of ``DELIVERY_STAGE`` for a message already read."""
    if message.status in (MessageStatus.sent, MessageStatus.failed):
        return message.status
    return "queued" if message.attempts == 0 else "retrying"


def query_messages(uow: UnitOfWork, query: ListQuery) -> tuple[list[MessageView], int]:
    """Messages in the actor's subtree matching ``query`` (``MESSAGE_FILTERS``), newest
    first, and how many match in all (filtered in SQL before paging)."""
    select_ = _scoped(uow, select(NotifyMessage)).where(
        *where_clauses(query.conditions, MESSAGE_FILTERS)
    )
    rows, total = fetch_page(
        uow.session,
        select_,
        query,
        order_by=[NotifyMessage.created_at.desc(), NotifyMessage.id.desc()],
    )
    return [_view(row) for row in rows], total


def get_message(uow: UnitOfWork, message_id: str) -> MessageView:
    """One message; another organisation's answers exactly like a missing one."""
    row = uow.session.scalars(
        _scoped(uow, select(NotifyMessage).where(NotifyMessage.id == message_id))
    ).first()
    if row is None:
        raise NotFound(_("No such message"))
    return _view(row)


def sent_messages(
    uow: UnitOfWork, to: str | None = None, *, limit: int = 50
) -> list[RecordedMessage]:
    """What the development recorder delivered, newest first, in full — one-time codes
    included, which is its purpose (demo mode and tests); reading it is audited."""
    _check_limit(limit)
    query = _scoped(
        uow,
        select(NotifyMessage).where(
            NotifyMessage.provider == DevRecorderSender.name,
            NotifyMessage.status == MessageStatus.sent,
        ),
    )
    if to is not None:
        query = query.where(NotifyMessage.recipient == _recipient_filter(to))
    query = query.order_by(NotifyMessage.sent_at.desc(), NotifyMessage.id.desc()).limit(limit)
    rows = uow.session.scalars(query).all()
    uow.audit(
        "notify.recorded.read",
        "notify_message",
        rows[0].id if rows else "-",
        {"count": len(rows), "to": _mask_filter(to)},
    )
    return [
        RecordedMessage(
            id=row.id,
            channel=row.channel,
            recipient=mask_recipient(row.channel, row.recipient),
            template=row.template,
            locale=row.locale,
            text=row.transcript or "",
            sent_at=row.sent_at or row.created_at,
        )
        for row in rows
    ]
