import pytest

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.inventory import service
from teleserve.inventory.models import SubscriptionBar
from teleserve.inventory.schemas import Bar
from tests.catalog.helpers import audit_actions, count, outbox
from tests.inventory.conftest import (
    AGENT,
    OTHER_CUSTOMER,
    OWNER,
    SUPERVISOR,
    SZ,
    TERMINAL,
    new_line,
)

API_CLIENT = Actor(ActorKind.api_client, "crm", SZ, frozenset({"inventory.write"}))

# Who may place / lift each bar (the rules, written out independently of the service).
MAY_PLACE = {
    "credit": {"agent", "supervisor", "system", "api"},
    "lost": {"agent", "supervisor", "owner", "api"},
    "keep_number": {"agent", "supervisor", "owner"},
    "admin": {"supervisor"},
    "fraud": {"supervisor", "system"},
}
MAY_LIFT = {
    "credit": {"agent", "supervisor", "system", "api"},
    "lost": {"supervisor"},
    "keep_number": {"agent", "supervisor", "owner"},
    "admin": {"supervisor"},
    "fraud": {"supervisor"},
}
ACTORS = {
    "agent": AGENT,
    "supervisor": SUPERVISOR,
    "system": SYSTEM,
    "owner": OWNER,
    "api": API_CLIENT,
    "terminal": TERMINAL,
}


def bars_of(make_uow, sub_id):
    with make_uow(SYSTEM) as uow:
        return service.get_subscription(uow, sub_id).bar_types


def test_bar_makes_the_line_suspended_and_lifting_resumes_it(make_uow, engine, line):
    with make_uow(AGENT) as uow:
        barred = service.add_bar(uow, line.id, "credit", "balance below zero")
        uow.commit()
    assert barred.suspended and barred.bar_types == {Bar.credit}
    [bar] = barred.bars
    assert bar.reason == "balance below zero" and bar.placed_by == "staff:agent-sz"
    with make_uow(AGENT) as uow:
        resumed = service.lift_bar(uow, line.id, "credit", "paid at the counter")
        uow.commit()
    assert not resumed.suspended and resumed.bars == ()
    assert audit_actions(engine, line.id)[-2:] == [
        "inventory.subscription.bar_added",
        "inventory.subscription.bar_lifted",
    ]
    events = outbox(engine, "inventory.subscription_changed")
    added = next(e for e in events if e["change"] == "bar_added")
    assert added["suspended"] is True and added["bars"] == ["credit"]
    # The history stays: one row, lifted, with who and why.
    with engine.connect() as conn:
        [row] = conn.execute(SubscriptionBar.__table__.select()).all()
    assert row.lifted_by == "staff:agent-sz" and row.lift_reason == "paid at the counter"


@pytest.mark.parametrize("bar", list(MAY_PLACE))
def test_who_may_place_and_lift_each_bar(make_uow, catalog, bar):
    for number, (who, actor) in enumerate(ACTORS.items()):
        with make_uow(SYSTEM) as uow:
            sub_id = service.create_subscription(
                uow, new_line(service_number=f"1380000{number:04d}")
            ).id
            uow.commit()
        with make_uow(actor) as uow:
            if who in MAY_PLACE[bar]:
                assert bar in service.add_bar(uow, sub_id, bar, "test").bar_types, who
            else:
                with pytest.raises(PermissionDenied):
                    service.add_bar(uow, sub_id, bar, "test")
        with make_uow(SUPERVISOR) as uow:
            # Staff with every bar permission may place any bar: now try lifting it.
            service.add_bar(uow, sub_id, bar, "setup")
            uow.commit()
        with make_uow(actor) as uow:
            if who in MAY_LIFT[bar]:
                assert bar not in service.lift_bar(uow, sub_id, bar, "test").bar_types, who
            else:
                with pytest.raises(PermissionDenied):
                    service.lift_bar(uow, sub_id, bar, "test")


def test_customer_acts_only_on_own_line(make_uow, line):
    with make_uow(OTHER_CUSTOMER) as uow, pytest.raises(NotFound):
        service.add_bar(uow, line.id, "lost", "not mine")
    with make_uow(OWNER) as uow:
        assert service.add_bar(uow, line.id, "lost", "left it on the bus").suspended


def test_duplicate_and_missing_bars(make_uow, engine, line):
    with make_uow(SUPERVISOR) as uow:
        service.add_bar(uow, line.id, "admin", "court order")
        uow.commit()
    with make_uow(SUPERVISOR) as uow:
        with pytest.raises(Conflict) as exc:
            service.add_bar(uow, line.id, "admin", "again")
        assert str(exc.value) == "The line is already barred by the operator"
        with pytest.raises(Conflict) as exc:
            service.lift_bar(uow, line.id, "lost", "found")
        assert str(exc.value) == "The line is not reported lost"
    assert count(engine, SubscriptionBar) == 1


@pytest.mark.parametrize(
    ("bar", "reason", "fragment"),
    [
        ("holiday", "x", "Unknown bar type holiday"),
        ("credit", "", "A reason is required"),
        ("credit", "   ", "A reason is required"),
        ("credit", "x" * 501, "too long"),
    ],
)
def test_bad_bar_input(make_uow, engine, line, bar, reason, fragment):
    with make_uow(AGENT) as uow, pytest.raises(ValidationError) as exc:
        service.add_bar(uow, line.id, bar, reason)
    assert fragment in str(exc.value)
    assert count(engine, SubscriptionBar) == 0


def test_keep_number_needs_no_arrears(make_uow, line):
    with make_uow(SYSTEM) as uow:
        service.add_bar(uow, line.id, "credit", "arrears")
        uow.commit()
    with make_uow(OWNER) as uow, pytest.raises(Conflict) as exc:
        service.add_bar(uow, line.id, "keep_number", "travelling")
    assert "Pay the arrears" in str(exc.value)
    with make_uow(TERMINAL) as uow:
        assert service.on_payment_received(uow, "13800138000", payment_ref="R1") == (Bar.credit,)
        uow.commit()
    with make_uow(OWNER) as uow:
        assert service.add_bar(uow, line.id, "keep_number", "travelling").suspended
        # Arrears may still arise while keeping the number (a monthly keep fee).
        uow.commit()
    with make_uow(SYSTEM) as uow:
        assert service.add_bar(uow, line.id, "credit", "keep fee unpaid").bar_types == {
            Bar.keep_number,
            Bar.credit,
        }


def test_payment_lifts_only_the_credit_bar(make_uow, engine, line):
    with make_uow(SUPERVISOR) as uow:
        for bar in ("credit", "lost", "admin", "fraud"):
            service.add_bar(uow, line.id, bar, "setup")
        uow.commit()
    with make_uow(TERMINAL) as uow:
        lifted = service.on_payment_received(uow, "138-0013-8000", payment_ref="R20261125000001")
        uow.commit()
    assert lifted == (Bar.credit,)
    assert bars_of(make_uow, line.id) == {Bar.lost, Bar.admin, Bar.fraud}
    with engine.connect() as conn:
        row = conn.execute(
            SubscriptionBar.__table__.select().where(SubscriptionBar.bar == "credit")
        ).one()
    assert row.lift_reason == "payment R20261125000001" and row.lifted_by == "terminal:K-1"
    # Nothing left for a payment to lift: no change, no audit record.
    before = audit_actions(engine, line.id)
    with make_uow(TERMINAL) as uow:
        assert service.on_payment_received(uow, line.id) == ()
        uow.commit()
    assert audit_actions(engine, line.id) == before


def test_payment_keeps_keep_number(make_uow, line):
    with make_uow(OWNER) as uow:
        service.add_bar(uow, line.id, "keep_number", "abroad for a year")
        uow.commit()
    with make_uow(SYSTEM) as uow:
        assert service.on_payment_received(uow, line.id) == ()
    assert bars_of(make_uow, line.id) == {Bar.keep_number}


def test_payment_on_pending_line_or_unknown_number(make_uow, catalog):
    with make_uow(AGENT) as uow:
        pending = service.create_subscription(uow, new_line(status="pending"))
        uow.commit()
    with make_uow(TERMINAL) as uow:
        assert service.on_payment_received(uow, pending.id) == ()
        with pytest.raises(NotFound):
            service.on_payment_received(uow, "13999999999")


def test_payment_needs_a_paying_actor(make_uow, line):
    with make_uow(SYSTEM) as uow:
        service.add_bar(uow, line.id, "credit", "arrears")
        uow.commit()
    reader = Actor(ActorKind.staff, "reader", SZ, frozenset({"inventory.read"}))
    with make_uow(reader) as uow, pytest.raises(PermissionDenied):
        service.on_payment_received(uow, line.id)
    assert bars_of(make_uow, line.id) == {Bar.credit}


def test_payments_are_accepted_operator_wide(make_uow, line):
    """A kiosk in another city, or another customer (代缴), may pay for the line."""
    elsewhere = Actor(ActorKind.terminal, "K-GZ", "/T/GD/GZ/", frozenset({"payments.record"}))
    for payer in (elsewhere, OTHER_CUSTOMER):
        with make_uow(SYSTEM) as uow:
            service.add_bar(uow, line.id, "credit", "arrears")
            uow.commit()
        with make_uow(payer) as uow:
            assert service.on_payment_received(uow, "13800138000") == (Bar.credit,)
            uow.commit()
        assert bars_of(make_uow, line.id) == frozenset()
    # ...but the payer still cannot read or change the line otherwise.
    with make_uow(OTHER_CUSTOMER) as uow, pytest.raises(NotFound):
        service.get_subscription(uow, line.id)


def test_denials_explain_themselves(make_uow, line):
    with make_uow(SUPERVISOR) as uow:
        service.add_bar(uow, line.id, "lost", "stolen")
        uow.commit()
    with make_uow(OWNER) as uow, pytest.raises(PermissionDenied) as exc:
        service.lift_bar(uow, line.id, "lost", "found it")
    assert "authorised staff" in str(exc.value)
    assert exc.value.render("zh-CN") == "挂失的号码只能由授权工作人员核验客户身份证件后解挂"
    with make_uow(AGENT) as uow, pytest.raises(PermissionDenied) as exc:
        service.lift_bar(uow, line.id, "lost", "found it")
    assert "inventory.bars.lost" in str(exc.value)
    with make_uow(SYSTEM) as uow, pytest.raises(PermissionDenied) as exc:
        service.add_bar(uow, line.id, "keep_number", "auto")
    assert "customer's request" in str(exc.value)


def test_account_payment_lifts_credit_on_every_line_of_the_account(make_uow, line):
    with make_uow(SYSTEM) as uow:
        second = service.create_subscription(uow, new_line(service_number="13800138001"))
        other_account = service.create_subscription(
            uow, new_line(service_number="13800138002", billing_account_id="BA-2")
        )
        for sub_id in (line.id, second.id, other_account.id):
            service.add_bar(uow, sub_id, "credit", "arrears")
        service.add_bar(uow, line.id, "fraud", "checking")
        uow.commit()
    elsewhere = Actor(ActorKind.terminal, "K-GZ", "/T/GD/GZ/", frozenset({"payments.record"}))
    with make_uow(elsewhere) as uow:
        lifted = service.on_account_payment(uow, "BA-1", payment_ref="R1")
        uow.commit()
    assert lifted == {line.id: (Bar.credit,), second.id: (Bar.credit,)}
    assert bars_of(make_uow, line.id) == {Bar.fraud}
    assert bars_of(make_uow, second.id) == frozenset()
    assert bars_of(make_uow, other_account.id) == {Bar.credit}
    reader = Actor(ActorKind.staff, "reader", SZ, frozenset({"inventory.read"}))
    with make_uow(reader) as uow, pytest.raises(PermissionDenied):
        service.on_account_payment(uow, "BA-NONE")
