"""Held money paid back at a counter (``refund_held``) and the list of held money
(``list_held_payments``): the ledger moves it from suspense to the hall's cash desk, the
ledger check stays clean, and every refusal changes nothing."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.outbox import OutboxMessage
from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgUnitSpec
from teleserve.payments import service as payments
from teleserve.payments.models import transfer_table

from .helpers import snapshot

HALL = "/TS/GD/GZ/GZ01/"
HALL_SITE = "/TS/GD/GZ/GZ01/GZ01-K/"
CITY = "/TS/GD/GZ/"
CITY_SITE = "/TS/GD/GZ/GZ-K2/"
OTHER_HALL = "/TS/GD/SZ/SZ01/"
SETTLE = frozenset({"payments.read", "payments.settle", "iam.orgs.read"})


def actor(org_path: str, permissions: frozenset[str] = SETTLE, name: str = "fin") -> Actor:
    return Actor(ActorKind.staff, f"{name}{org_path}", org_path, permissions, name)


@pytest.fixture
def tree(make_uow) -> None:
    """TS → GD → GZ (city) → GZ01 (hall) → GZ01-K (site); GZ → GZ-K2 (site);
    GD → SZ (city) → SZ01 (hall)."""
    specs = [
        OrgUnitSpec(code="TS", name_zh="运营商", name_en="Operator", level="operator"),
        OrgUnitSpec(code="GD", name_zh="广东", name_en="GD", level="province", parent_code="TS"),
        OrgUnitSpec(code="GZ", name_zh="广州", name_en="GZ", level="city", parent_code="GD"),
        OrgUnitSpec(code="SZ", name_zh="深圳", name_en="SZ", level="city", parent_code="GD"),
        OrgUnitSpec(code="GZ01", name_zh="天河", name_en="Tianhe", level="hall", parent_code="GZ"),
        OrgUnitSpec(code="GZ01-K", name_zh="自助", name_en="K", level="site", parent_code="GZ01"),
        OrgUnitSpec(code="GZ-K2", name_zh="车站", name_en="K2", level="site", parent_code="GZ"),
        OrgUnitSpec(code="SZ01", name_zh="福田", name_en="Futian", level="hall", parent_code="SZ"),
    ]
    with make_uow() as uow:
        iam.create_org_units_batch(uow, specs)
        uow.commit()


def held(make_uow, key: str, amount: int = 5000, org_path: str = HALL_SITE, **fields) -> str:
    """A kiosk cash payment naming only a service number: recorded held."""
    values = {
        "channel": "kiosk_cash",
        "source_id": "BOX1",
        "terminal_id": "T1",
        "terminal_serial": key,
        "service_number": "13800138000",
    }
    values.update(fields)
    request = payments.PaymentRequest(key, amount=amount, org_path=org_path, **values)
    with make_uow() as uow:
        [outcome] = payments.record_payments(uow, [request])
        uow.commit()
    assert outcome.status == "held", outcome
    assert outcome.payment_id is not None
    return outcome.payment_id


def refund(make_uow, payment_id: str, who: Actor, note: str = "customer came back"):
    with make_uow(who) as uow:
        view = payments.refund_held(uow, payment_id, note)
        uow.commit()
    return view


def system(make_uow, code: str) -> int:
    with make_uow() as uow:
        return payments.system_account_balance(uow, code).balance


def problems(make_uow) -> list[str]:
    with make_uow() as uow:
        return payments.check_ledger(uow)


def test_a_hall_refunds_held_money_from_its_cash_desk(make_uow, engine, tree):
    payment_id = held(make_uow, "k-1", 4000)
    assert system(make_uow, "suspense") == 4000
    view = refund(make_uow, payment_id, actor(HALL), " customer came back ")
    assert view.status == "reversed" and view.reversal_reason == "customer came back"
    assert view.reversed_at is not None and view.held_reason == "unresolved_target"
    assert system(make_uow, "suspense") == 0
    assert system(make_uow, "cash_desk:GZ01") == -4000  # cash paid out of the desk
    assert system(make_uow, "cash_box:BOX1") == 4000  # the notes are still in the box
    assert problems(make_uow) == []
    with engine.connect() as conn:
        kinds = conn.execute(
            select(transfer_table.c.kind).where(transfer_table.c.payment_id == payment_id)
        ).scalars()
        assert sorted(kinds) == ["hold", "refund"]
        audit = (
            conn.execute(select(AuditRecord.detail).where(AuditRecord.action == "payment.refunded"))
            .scalars()
            .all()
        )
        events = (
            conn.execute(
                select(OutboxMessage.payload).where(OutboxMessage.topic == "payments.refunded")
            )
            .scalars()
            .all()
        )
    assert len(audit) == 1 and '"cash_desk":"cash_desk:GZ01"' in audit[0]
    assert len(events) == 1
    payload = events[0]
    assert payload["payment_id"] == payment_id and payload["cash_desk"] == "cash_desk:GZ01"
    assert payload["status"] == "reversed" and payload["amount"] == 4000


def test_refusals_change_nothing(make_uow, engine, tree):
    payment_id = held(make_uow, "k-1")
    before = snapshot(engine)
    with pytest.raises(PermissionDenied):
        refund(make_uow, payment_id, actor(HALL, frozenset({"payments.read", "iam.orgs.read"})))
    for note in ("", "   ", "x" * 201, None):
        with pytest.raises(ValidationError):
            refund(make_uow, payment_id, actor(HALL), note)  # type: ignore[arg-type]
    with pytest.raises(NotFound):  # another city's staff: no such payment
        refund(make_uow, payment_id, actor(OTHER_HALL))
    with pytest.raises(NotFound):
        refund(make_uow, "0" * 32, actor(HALL))
    assert snapshot(engine) == before

    refund(make_uow, payment_id, actor(HALL))
    after = snapshot(engine)
    with pytest.raises(Conflict) as again:
        refund(make_uow, payment_id, actor(HALL))
    assert again.value.code == "invalid_payment_state"
    assert snapshot(engine) == after


def test_a_completed_payment_is_not_refunded(make_uow, engine, tree):
    with make_uow() as uow:
        payments.ensure_customer_accounts(uow, [payments.CustomerAccountSpec("BA1", "C1", HALL)])
        [paid] = payments.record_payments(
            uow,
            [
                payments.PaymentRequest(
                    "k-1",
                    amount=100,
                    billing_account_id="BA1",
                    channel="counter_cash",
                    source_id="D1",
                    org_path=HALL,
                )
            ],
        )
        uow.commit()
    assert paid.status == "completed" and paid.payment_id is not None
    before = snapshot(engine)
    with pytest.raises(Conflict) as refused:
        refund(make_uow, paid.payment_id, actor(HALL))
    assert refused.value.code == "invalid_payment_state"
    assert snapshot(engine) == before


def test_staff_above_the_halls_refund_at_the_hall_that_received_it(make_uow, engine, tree):
    at_hall_site = held(make_uow, "k-1", 700, org_path=HALL_SITE)
    at_city_site = held(make_uow, "k-2", 900, org_path=CITY_SITE)
    city = actor(CITY)
    refund(make_uow, at_hall_site, city)
    assert system(make_uow, "cash_desk:GZ01") == -700
    before = snapshot(engine)
    with pytest.raises(Conflict) as refused:  # a kiosk outside any hall: no cash desk
        refund(make_uow, at_city_site, city)
    assert refused.value.code == "no_cash_desk"
    assert snapshot(engine) == before
    # operator-wide staff (path "/", above the root unit) too
    admin = Actor(ActorKind.staff, "admin", "/", frozenset({"*"}), "admin")
    assert refund(make_uow, held(make_uow, "k-3", 300), admin).status == "reversed"
    assert system(make_uow, "cash_desk:GZ01") == -1000
    assert problems(make_uow) == []


def test_a_desk_refunding_money_it_took_itself_keeps_the_ledger_clean(make_uow, tree):
    """A counter payment into desk GZ01 with an unknown account, refunded by that hall:
    the refund's desk is the payment's source, and the check nets both to zero."""
    request = payments.PaymentRequest(
        "c-1",
        amount=2500,
        billing_account_id="NO-SUCH",
        channel="counter_cash",
        source_id="GZ01",
        org_path=HALL,
    )
    with make_uow() as uow:
        [outcome] = payments.record_payments(uow, [request])
        uow.commit()
    assert outcome.status == "held" and outcome.payment_id is not None
    refund(make_uow, outcome.payment_id, actor(HALL))
    assert system(make_uow, "cash_desk:GZ01") == 0
    assert problems(make_uow) == []


def test_the_ledger_check_sees_a_refund_that_went_wrong(make_uow, engine, tree):
    payment_id = held(make_uow, "k-1", 4000)
    refund(make_uow, payment_id, actor(HALL))
    with engine.begin() as conn:  # the refund's credit moved to another desk by hand
        conn.execute(
            transfer_table.update()
            .where(transfer_table.c.payment_id == payment_id, transfer_table.c.kind == "refund")
            .values(credit_account_id="f" * 32)
        )
    assert any("4000" in line for line in problems(make_uow))


def test_the_held_list_filters_pages_and_scopes(make_uow, tree):
    first = held(make_uow, "k-1", 100, org_path=HALL_SITE, terminal_id="T1")
    second = held(make_uow, "k-2", 200, org_path=HALL_SITE, terminal_id="T2")
    held(make_uow, "k-3", 300, org_path="/TS/GD/SZ/SZ01/", terminal_id="T3")
    hall = actor(HALL)
    with make_uow(hall) as uow:
        found, total = payments.list_held_payments(uow)
        assert total == 2 and [p.id for p in found] == [second, first]  # newest first
        found, total = payments.list_held_payments(uow, terminal_id="T1")
        assert total == 1 and found[0].id == first
        found, total = payments.list_held_payments(uow, reason="unresolved_target", limit=1)
        assert total == 2 and len(found) == 1
        found, _total = payments.list_held_payments(uow, limit=1, offset=1)
        assert [p.id for p in found] == [first]
        assert payments.list_held_payments(uow, reason="amount_mismatch") == ([], 0)
        today = found[0].business_date
        assert payments.list_held_payments(uow, first=today, last=today)[1] == 2
        assert (
            payments.list_held_payments(uow, first=date(2000, 1, 1), last=date(2000, 1, 2))[1] == 0
        )
        with pytest.raises(ValidationError):
            payments.list_held_payments(uow, reason="bogus")
        with pytest.raises(ValidationError):
            payments.list_held_payments(uow, first=today, last=date(2000, 1, 1))
        with pytest.raises(ValidationError):
            payments.list_held_payments(uow, limit=0)
    refund(make_uow, first, hall)
    with make_uow(hall) as uow:
        assert payments.list_held_payments(uow)[1] == 1  # a refunded payment is not held
    with make_uow(SYSTEM) as uow:
        assert payments.list_held_payments(uow)[1] == 2
    with (
        make_uow(actor(HALL, frozenset({"iam.orgs.read"}))) as uow,
        pytest.raises(PermissionDenied),
    ):
        payments.list_held_payments(uow)
