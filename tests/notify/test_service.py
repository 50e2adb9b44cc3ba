"""Queueing, delivery through the outbox worker, honest failure, listings and scoping."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.db import read_engine
from teleserve.core.errors import NotFound, PermissionDenied, ValidationError
from teleserve.core.outbox import OutboxMessage
from teleserve.core.settings import Mode, use_settings
from teleserve.core.worker import run_once
from teleserve.notify import senders
from teleserve.notify import service as notify
from teleserve.notify.models import Channel, NotifyMessage
from teleserve.notify.senders import Delivery, Outgoing

PHONE = "13800138000"


def staff(org_path: str = "/", *permissions: str) -> Actor:
    return Actor(ActorKind.staff, "staff-1", org_path, frozenset(permissions or {"notify.read"}))


def _row(engine, message_id: str):
    with read_engine(engine).connect() as conn:
        return conn.execute(select(NotifyMessage).where(NotifyMessage.id == message_id)).one()


def _count(engine, model) -> int:
    with read_engine(engine).connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model)) or 0)


def _queue_otp(make_uow, code: str = "482913", **kwargs) -> str:
    with make_uow() as uow:
        message_id = notify.queue_sms(
            uow, to=kwargs.pop("to", PHONE), template="otp", params={"code": code}, **kwargs
        )
        uow.commit()
    return message_id


def test_an_sms_is_delivered_after_commit_and_recorded_in_demo_mode(make_uow, engine):
    message_id = _queue_otp(make_uow, locale="zh-CN", customer_id="C1", org_path="/HQ/BJ/")
    row = _row(engine, message_id)
    assert (row.status, row.body, row.provider) == ("queued", None, None)

    stats = run_once(engine)
    assert stats.processed == 1
    row = _row(engine, message_id)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    assert row.provider == "dev-recorder" and row.provider_ref == f"dev-{message_id}"
    assert row.transcript == "您的验证码是482913，5分钟内有效。请勿泄露给他人。"
    # What staff see: the code hidden, the recipient masked.
    assert row.body == "您的验证码是******，5分钟内有效。请勿泄露给他人。"
    with make_uow(staff("/HQ/")) as uow:
        (view,) = notify.list_messages(uow)
        recorded = notify.sent_messages(uow, to=PHONE)
        uow.commit()
    assert view.recipient == "138****8000" and "482913" not in view.model_dump_json()
    assert [r.text for r in recorded] == [row.transcript]
    assert recorded[0].recipient == "138****8000"
    with read_engine(engine).connect() as conn:
        actions = list(conn.execute(select(AuditRecord.action, AuditRecord.detail)))
    assert {a for a, _d in actions} == {"notify.queued", "notify.recorded.read"}
    assert all(PHONE not in detail for _a, detail in actions)


def test_a_rolled_back_unit_of_work_delivers_nothing(make_uow, engine):
    with make_uow() as uow:
        notify.queue_sms(uow, to=PHONE, template="otp", params={"code": "111111"})
        # the caller fails before committing
    assert run_once(engine).claimed == 0
    assert _count(engine, NotifyMessage) == 0 and _count(engine, OutboxMessage) == 0


def test_the_recipients_locale_is_used(make_uow, engine):
    message_id = _queue_otp(make_uow, locale="en")
    run_once(engine)
    assert _row(engine, message_id).transcript.startswith("Your verification code is 482913")


def test_email_in_demo_mode_is_recorded_with_its_subject(make_uow, engine):
    with make_uow() as uow:
        message_id = notify.queue_email(
            uow,
            to="Zhang.San@Example.COM",
            template="password_changed",
            params={"number": PHONE},
            locale="zh-CN",
        )
        uow.commit()
    run_once(engine)
    row = _row(engine, message_id)
    assert row.recipient == "Zhang.San@example.com"
    assert row.transcript == (
        "服务密码已修改\n\n您的号码138****8000的服务密码已修改成功。如非本人操作，请立即联系客服。"
    )
    with make_uow(staff()) as uow:
        assert notify.get_message(uow, message_id).recipient == "Z***@example.com"


def test_production_without_an_sms_gateway_fails_honestly(make_uow, engine, settings):
    use_settings(settings.model_copy(update={"mode": Mode.production}))
    assert not senders.channel_available(Channel.sms)
    message_id = _queue_otp(make_uow)
    stats = run_once(engine)
    assert stats.dead == 1 and stats.processed == 0
    row = _row(engine, message_id)
    assert (row.status, row.error, row.attempts) == ("failed", "No SMS gateway is configured", 1)
    assert row.transcript is None and row.provider is None
    assert row.body == "您的验证码是******，5分钟内有效。请勿泄露给他人。"
    with read_engine(engine).connect() as conn:
        outbox = conn.execute(select(OutboxMessage)).one()
    assert outbox.status == "dead"
    assert outbox.last_error == "notify.deliver: No SMS gateway is configured"
    with make_uow(staff()) as uow:
        assert notify.sent_messages(uow) == []
        (view,) = notify.list_messages(uow, status="failed")
    assert view.error == "No SMS gateway is configured"


def test_production_without_smtp_fails_email_honestly(make_uow, engine, settings):
    use_settings(settings.model_copy(update={"mode": Mode.production}))
    with make_uow() as uow:
        message_id = notify.queue_email(
            uow, to="a@example.com", template="balance_low", params={"number": PHONE, "balance": 1}
        )
        uow.commit()
    assert run_once(engine).dead == 1
    row = _row(engine, message_id)
    assert (row.status, row.error) == ("failed", "No email (SMTP) server is configured")


class Flaky:
    """A sender that is down for its first ``failures`` calls."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[Outgoing] = []

    def send(self, message: Outgoing) -> Delivery:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("gateway timeout")
        self.sent.append(message)
        return Delivery(self.name, f"ref-{len(self.sent)}")


def test_a_transient_sender_failure_is_retried_then_sent(make_uow, engine, frozen_clock):
    gateway = Flaky(failures=1)
    senders.use_sender(Channel.sms, gateway)
    message_id = _queue_otp(make_uow, code="7777")
    assert run_once(engine).retried == 1
    row = _row(engine, message_id)
    assert row.status == "queued" and row.attempts == 0  # the failed attempt rolled back
    frozen_clock.advance(minutes=1)
    assert run_once(engine).processed == 1
    row = _row(engine, message_id)
    assert (row.status, row.attempts, row.provider, row.provider_ref) == (
        "sent",
        2,
        "flaky",
        "ref-1",
    )
    assert row.transcript is None  # only the development recorder keeps the text
    assert [m.body for m in gateway.sent] == ["您的验证码是7777，5分钟内有效。请勿泄露给他人。"]


def test_a_sender_down_for_good_ends_failed_after_the_last_attempt(
    make_uow, engine, settings, frozen_clock
):
    use_settings(settings.model_copy(update={"outbox_max_attempts": 2}))
    senders.use_sender(Channel.sms, Flaky(failures=99))
    message_id = _queue_otp(make_uow)
    assert run_once(engine).retried == 1
    frozen_clock.advance(hours=1)
    assert run_once(engine).dead == 1
    row = _row(engine, message_id)
    assert (row.status, row.attempts, row.error) == (
        "failed",
        2,
        "ConnectionError: gateway timeout",
    )


def test_a_redelivered_message_is_not_sent_twice(make_uow, engine):
    gateway = Flaky(failures=0)
    senders.use_sender(Channel.sms, gateway)
    message_id = _queue_otp(make_uow)
    run_once(engine)
    with make_uow() as uow:  # a duplicate outbox message for the same notification
        uow.emit(notify.DELIVER_TOPIC, {"message_id": message_id})
        uow.commit()
    assert run_once(engine).processed == 1
    assert len(gateway.sent) == 1


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"to": "138-0013-8000x"}, "Not a valid mobile number: 138*****000x"),
        ({"to": "12"}, "Not a valid mobile number"),
        ({"template": "nope"}, "Unknown message template"),
        ({"params": {}}, "needs the parameter code"),
        ({"org_path": "HQ"}, "Not an organisation path"),
    ],
)
def test_bad_requests_change_nothing(make_uow, engine, kwargs, fragment):
    request = {"to": PHONE, "template": "otp", "params": {"code": "123456"}, **kwargs}
    with make_uow() as uow:
        with pytest.raises(ValidationError) as caught:
            notify.queue_sms(uow, **request)
        uow.commit()
    assert fragment in str(caught.value)
    assert _count(engine, NotifyMessage) == 0 and _count(engine, OutboxMessage) == 0


def test_a_bad_email_address_is_refused_masked(make_uow):
    with make_uow() as uow, pytest.raises(ValidationError) as caught:
        notify.queue_email(uow, to="zhangsan@", template="otp", params={"code": "1234"})
    assert "zhangsan" not in str(caught.value)


def test_phone_numbers_are_normalised(make_uow, engine):
    message_id = _queue_otp(make_uow, to="+86 138-0013-8000")
    assert _row(engine, message_id).recipient == PHONE
    with make_uow(staff()) as uow:
        assert [m.id for m in notify.list_messages(uow, to="0086 13800138000")] == [message_id]


def test_listings_are_scoped_to_the_organisation_subtree(make_uow, engine):
    beijing = _queue_otp(make_uow, customer_id="C1", org_path="/HQ/BJ/")
    shanghai = _queue_otp(make_uow, customer_id="C2", org_path="/HQ/SH/")
    anonymous = _queue_otp(make_uow)  # an OTP before the customer is known
    with make_uow(staff("/HQ/BJ/")) as uow:
        assert [m.id for m in notify.list_messages(uow)] == [beijing]
        assert notify.get_message(uow, beijing).customer_id == "C1"
        for hidden in (shanghai, anonymous, "missing"):
            with pytest.raises(NotFound):
                notify.get_message(uow, hidden)
    with make_uow(staff("/")) as uow:
        assert {m.id for m in notify.list_messages(uow)} == {beijing, shanghai, anonymous}
        assert [m.id for m in notify.list_messages(uow, customer_id="C2")] == [shanghai]
        assert [m.id for m in notify.list_messages(uow, limit=1)] == [anonymous]  # newest
        assert notify.list_messages(uow, status="sent") == []
    with make_uow(staff("/", "customers.read")) as uow, pytest.raises(PermissionDenied):
        notify.list_messages(uow)
    with make_uow(staff("/")) as uow, pytest.raises(ValidationError):
        notify.list_messages(uow, limit=0)
