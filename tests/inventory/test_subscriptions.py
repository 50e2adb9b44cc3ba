import pytest
from hypothesis import given
from hypothesis import strategies as st

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.inventory import service
from teleserve.inventory.models import Subscription, SubscriptionVas
from teleserve.inventory.schemas import LineKind, NewSubscription, SubscriptionStatus
from tests.catalog.helpers import audit_actions, count, outbox
from tests.inventory.conftest import (
    AGENT,
    GZ_AGENT,
    OTHER_CUSTOMER,
    OWNER,
    READER,
    SUPERVISOR,
    SZ,
    new_line,
)


def lines(engine) -> int:
    return count(engine, Subscription)


# -- creation --------------------------------------------------------------------------


def test_create_line_with_vas(make_uow, engine, catalog):
    with make_uow(AGENT) as uow:
        created = service.create_subscription(
            uow,
            new_line(
                service_number="+86 138-0013-8000",
                status="pending",
                plan_code="p_basic",
                vas_codes=["vas_clip", "VAS_DATA"],
            ),
        )
        uow.commit()
    assert created.service_number == "13800138000"
    assert created.status is SubscriptionStatus.pending and created.activated_at is None
    assert created.plan_code == "P_BASIC"
    assert created.vas_codes == ("VAS_CLIP", "VAS_DATA")
    assert created.bars == () and not created.suspended
    assert audit_actions(engine, created.id) == ["inventory.subscription.created"]
    [event] = outbox(engine, "inventory.subscription_changed")
    assert event["subscription_id"] == created.id and event["change"] == "created"
    assert event["vas"] == ["VAS_CLIP", "VAS_DATA"] and event["status"] == "pending"


@pytest.mark.parametrize(
    ("kind", "raw", "stored"),
    [
        ("mobile", "8613912345678", "13912345678"),
        ("fixed_line", "0755-8888 6666", "075588886666"),
        ("fixed_line", "010-66668888", "01066668888"),
        ("broadband", " gd.sz.ad12345@163 ", "gd.sz.ad12345@163"),
    ],
)
def test_service_numbers_are_normalised(make_uow, catalog, kind, raw, stored):
    plan = {"mobile": "P_BASIC", "fixed_line": "FL_BASIC", "broadband": "BB_100"}[kind]
    with make_uow(AGENT) as uow:
        created = service.create_subscription(
            uow, new_line(kind=kind, service_number=raw, plan_code=plan)
        )
        assert created.service_number == stored
        assert service.find_by_service_number(uow, raw).id == created.id


@pytest.mark.parametrize(
    ("fields", "error", "fragment"),
    [
        ({"service_number": "1380013800"}, ValidationError, "Not a valid mobile number"),
        ({"service_number": "12800138000"}, ValidationError, "Not a valid mobile number"),
        (
            {"kind": "fixed_line", "plan_code": "FL_BASIC", "service_number": "88886666"},
            ValidationError,
            "fixed-line",
        ),
        (
            {"kind": "broadband", "plan_code": "BB_100", "service_number": "a b"},
            ValidationError,
            "broadband account",
        ),
        ({"kind": "satellite"}, ValidationError, "Invalid value for kind"),
        ({"plan_code": "P_NOPE"}, ValidationError, "Unknown offering P_NOPE"),
        ({"plan_code": ""}, ValidationError, "offering code is required"),
        ({"plan_code": "P_DRAFT"}, ValidationError, "Unknown offering P_DRAFT"),
        ({"plan_code": "VAS_CLIP"}, ValidationError, "not a base plan for this kind of line"),
        ({"plan_code": "BB_100"}, ValidationError, "not a base plan for this kind of line"),
        ({"plan_code": "P_ORG"}, ValidationError, "only available to organisation customers"),
        ({"plan_code": "P_POST"}, ValidationError, "only available to postpaid accounts"),
        ({"org_path": "/T/BJ/", "plan_code": "P_GD"}, NotFound, "No such customer"),
        ({"vas_codes": ["VAS_NOPE"]}, ValidationError, "Unknown offering VAS_NOPE"),
        ({"vas_codes": ["P_PLUS"]}, ValidationError, "not a value-added service"),
        (
            {"plan_code": "P_PLUS", "vas_codes": ["VAS_DATA"]},
            ValidationError,
            "only available with the plans P_BASIC",
        ),
        (
            {"vas_codes": ["VAS_RING_A", "VAS_RING_B"]},
            ValidationError,
            "cannot be combined with VAS_RING_A",
        ),
        ({"vas_codes": ["VAS_CLIP", "vas_clip"]}, ValidationError, "listed twice"),
        ({"customer_id": ""}, ValidationError, "Invalid customer_id"),
        ({"billing_account_id": "x" * 33}, ValidationError, "Invalid billing_account_id"),
        ({"org_path": "T/GD"}, ValidationError, "Invalid organisation path"),
        ({"status": "terminated"}, ValidationError, "pending or active"),
        ({"customer_category": "alien"}, ValidationError, "Unknown customer category"),
    ],
)
def test_bad_new_lines_are_refused_and_nothing_written(
    make_uow, engine, catalog, fields, error, fragment
):
    actor = SUPERVISOR if fields.get("org_path") == "/T/BJ/" else AGENT
    with make_uow(actor) as uow, pytest.raises(error) as exc:
        service.create_subscription(uow, new_line(**fields))
    assert fragment in str(exc.value)
    assert lines(engine) == 0 and count(engine, SubscriptionVas) == 0


def test_plan_region_is_the_customers(make_uow, catalog):
    with make_uow(SYSTEM) as uow, pytest.raises(ValidationError) as exc:
        service.create_subscription(uow, new_line(org_path="/T/BJ/", plan_code="P_GD"))
    assert "not available in this region" in str(exc.value)


def test_creating_needs_inventory_write(make_uow, engine, catalog):
    for actor in (READER, OWNER):
        with make_uow(actor) as uow, pytest.raises(PermissionDenied):
            service.create_subscription(uow, new_line())
    assert lines(engine) == 0


def test_one_live_line_per_number(make_uow, engine, line):
    with make_uow(AGENT) as uow, pytest.raises(Conflict):
        service.create_subscription(uow, new_line(service_number="138 0013 8000"))
    with make_uow(AGENT) as uow:
        service.terminate(uow, line.id, "moved abroad")
        again = service.create_subscription(uow, new_line(customer_id="C-9"))
        uow.commit()
    assert again.id != line.id
    with make_uow(AGENT) as uow:
        assert service.find_by_service_number(uow, "13800138000").id == again.id


def test_batch_is_all_or_nothing(make_uow, engine, catalog):
    batch = [new_line(service_number=f"1391234{i:04d}", customer_id=f"C-{i}") for i in range(300)]
    with make_uow(SYSTEM) as uow:
        ids = service.create_subscriptions_batch(
            uow, [NewSubscription.model_validate(item) for item in batch]
        )
        uow.commit()
    assert len(ids) == len(set(ids)) == 300
    assert lines(engine) == 300
    with make_uow(SYSTEM) as uow:
        assert service.find_by_service_number(uow, "13912340299").customer_id == "C-299"

    bad = [new_line(service_number="13700000001"), new_line(service_number="13700000001")]
    with make_uow(SYSTEM) as uow, pytest.raises(Conflict) as exc:
        service.create_subscriptions_batch(uow, bad)
    assert exc.value.params["item"] == 1
    taken = [new_line(service_number="13700000002"), new_line(service_number="13912340007")]
    with make_uow(SYSTEM) as uow, pytest.raises(Conflict) as exc:
        service.create_subscriptions_batch(uow, taken)
    assert exc.value.params["item"] == 1
    invalid = [new_line(service_number="13700000003"), new_line(plan_code="P_NOPE")]
    with make_uow(SYSTEM) as uow, pytest.raises(ValidationError) as exc:
        service.create_subscriptions_batch(uow, invalid)
    assert exc.value.params["item"] == 1
    assert lines(engine) == 300


# -- lifecycle -------------------------------------------------------------------------


def test_activate_then_terminate(make_uow, engine, catalog, frozen_clock):
    with make_uow(AGENT) as uow:
        pending = service.create_subscription(uow, new_line(status="pending"))
        with pytest.raises(Conflict) as exc:
            service.add_bar(uow, pending.id, "credit", "arrears")
        assert str(exc.value) == "The line is not active yet"
        frozen_clock.advance(hours=1)
        active = service.activate(uow, pending.id)
        assert active.status is SubscriptionStatus.active
        assert active.activated_at == frozen_clock.now()
        with pytest.raises(Conflict) as exc:
            service.activate(uow, pending.id)
        assert str(exc.value) == "The line is already active"
        service.add_vas(uow, pending.id, "VAS_CLIP")
        ended = service.terminate(uow, pending.id, "customer request")
        assert ended.status is SubscriptionStatus.terminated and ended.vas == ()
        uow.commit()
    assert audit_actions(engine, pending.id) == [
        "inventory.subscription.created",
        "inventory.subscription.activated",
        "inventory.subscription.vas_added",
        "inventory.subscription.terminated",
    ]
    with engine.connect() as conn:
        [end_at] = conn.execute(
            SubscriptionVas.__table__.select().where(SubscriptionVas.subscription_id == pending.id)
        ).all()
    assert end_at.end_at is not None


def test_pending_line_can_be_cancelled(make_uow, catalog):
    with make_uow(AGENT) as uow:
        pending = service.create_subscription(uow, new_line(status="pending"))
        assert service.terminate(uow, pending.id, "never installed").terminated_at is not None


@pytest.mark.parametrize(
    "change",
    [
        lambda uow, sid: service.activate(uow, sid),
        lambda uow, sid: service.terminate(uow, sid, "again"),
        lambda uow, sid: service.change_plan(uow, sid, "P_PLUS"),
        lambda uow, sid: service.add_vas(uow, sid, "VAS_DATA"),
        lambda uow, sid: service.remove_vas(uow, sid, "VAS_CLIP"),
        lambda uow, sid: service.add_bar(uow, sid, "credit", "arrears"),
        lambda uow, sid: service.lift_bar(uow, sid, "lost", "found"),
    ],
    ids=["activate", "terminate", "change_plan", "add_vas", "remove_vas", "add_bar", "lift"],
)
def test_terminated_line_accepts_nothing(make_uow, engine, line, change):
    with make_uow(SUPERVISOR) as uow:
        service.add_bar(uow, line.id, "lost", "phone stolen")
        service.terminate(uow, line.id, "closing the account")
        uow.commit()
    with make_uow(SUPERVISOR) as uow, pytest.raises(Conflict) as exc:
        change(uow, line.id)
    assert str(exc.value) == "A terminated line accepts no changes"
    with make_uow(SUPERVISOR) as uow:
        assert service.on_payment_received(uow, line.id) == ()
        after = service.get_subscription(uow, line.id)
    # Bars are kept as they stood when the line was terminated.
    assert after.status is SubscriptionStatus.terminated and not after.suspended
    assert {b.bar for b in after.bars} == {"lost"}
    assert audit_actions(engine, line.id)[-1] == "inventory.subscription.terminated"


def test_lifecycle_needs_inventory_write(make_uow, line):
    with make_uow(OWNER) as uow, pytest.raises(PermissionDenied):
        service.terminate(uow, line.id, "I am leaving")
    with make_uow(READER) as uow, pytest.raises(PermissionDenied):
        service.terminate(uow, line.id, "no")
    with make_uow(AGENT) as uow, pytest.raises(ValidationError):
        service.terminate(uow, line.id, "   ")


# -- plan and VAS changes --------------------------------------------------------------


def test_change_plan(make_uow, engine, line):
    with make_uow(OWNER) as uow:  # self-service at a kiosk
        changed = service.change_plan(uow, line.id, "p_plus")
        uow.commit()
    assert changed.plan_code == "P_PLUS"
    with make_uow(AGENT) as uow:
        with pytest.raises(ValidationError) as exc:
            service.change_plan(uow, line.id, "P_PLUS")
        assert "already has plan P_PLUS" in str(exc.value)
        with pytest.raises(ValidationError) as exc:
            service.change_plan(uow, line.id, "P_ORG")
        assert "organisation customers" in str(exc.value)
        with pytest.raises(ValidationError):
            service.change_plan(uow, line.id, "BB_100")
        with pytest.raises(ValidationError):
            service.change_plan(uow, line.id, "P_NOPE")
    assert [e["change"] for e in outbox(engine, "inventory.subscription_changed")] == [
        "created",
        "plan_changed",
    ]


def test_plan_change_must_keep_current_vas(make_uow, line):
    with make_uow(AGENT) as uow:
        service.add_vas(uow, line.id, "VAS_DATA")  # only with P_BASIC
        with pytest.raises(ValidationError) as exc:
            service.change_plan(uow, line.id, "P_PLUS")
        assert "VAS_DATA does not work with plan P_PLUS" in str(exc.value)
        service.remove_vas(uow, line.id, "VAS_DATA")
        assert service.change_plan(uow, line.id, "P_PLUS").plan_code == "P_PLUS"


def test_add_and_remove_vas(make_uow, engine, line):
    with make_uow(OWNER) as uow:
        added = service.add_vas(uow, line.id, "vas_ring_a")
        assert added.vas_codes == ("VAS_CLIP", "VAS_RING_A")
        with pytest.raises(Conflict):
            service.add_vas(uow, line.id, "VAS_CLIP")
        with pytest.raises(ValidationError) as exc:
            service.add_vas(uow, line.id, "VAS_RING_B")
        assert "cannot be combined" in str(exc.value)
        with pytest.raises(ValidationError):
            service.add_vas(uow, line.id, "P_PLUS")
        removed = service.remove_vas(uow, line.id, "VAS_RING_A")
        assert removed.vas_codes == ("VAS_CLIP",)
        with pytest.raises(Conflict):
            service.remove_vas(uow, line.id, "VAS_RING_A")
        # Removed, it may be taken again (a new period).
        assert service.add_vas(uow, line.id, "VAS_RING_B").vas_codes[-1] == "VAS_RING_B"
        uow.commit()
    assert count(engine, SubscriptionVas) == 3


def test_operator_bars_freeze_service_changes(make_uow, line):
    with make_uow(SUPERVISOR) as uow:
        service.add_bar(uow, line.id, "fraud", "suspicious calls")
        for change in (
            lambda: service.change_plan(uow, line.id, "P_PLUS"),
            lambda: service.add_vas(uow, line.id, "VAS_RING_A"),
            lambda: service.remove_vas(uow, line.id, "VAS_CLIP"),
        ):
            with pytest.raises(Conflict) as exc:
                change()
            assert "barred by the operator" in str(exc.value)
        service.lift_bar(uow, line.id, "fraud", "cleared")
        service.add_bar(uow, line.id, "credit", "arrears")  # a credit bar freezes nothing
        assert service.change_plan(uow, line.id, "P_PLUS").plan_code == "P_PLUS"


# -- reads and scoping -----------------------------------------------------------------


def test_reads_are_scoped(make_uow, line):
    with make_uow(GZ_AGENT) as uow:
        with pytest.raises(NotFound):
            service.get_subscription(uow, line.id)
        with pytest.raises(NotFound):
            service.find_by_service_number(uow, "13800138000")
        with pytest.raises(NotFound):
            service.add_bar(uow, line.id, "credit", "arrears")
        with pytest.raises(NotFound):
            service.change_plan(uow, line.id, "P_PLUS")
        assert service.list_for_customer(uow, "C-1") == []
    for actor in (AGENT, SUPERVISOR, READER, OWNER):
        with make_uow(actor) as uow:
            assert service.get_subscription(uow, line.id).id == line.id
            assert [s.id for s in service.list_for_customer(uow, "C-1")] == [line.id]
            assert [s.id for s in service.list_for_billing_account(uow, "BA-1")] == [line.id]
    with make_uow(OTHER_CUSTOMER) as uow:
        with pytest.raises(NotFound):
            service.get_subscription(uow, line.id)
        with pytest.raises(NotFound):
            service.add_vas(uow, line.id, "VAS_RING_A")
        assert service.list_for_customer(uow, "C-1") == []
    nobody = Actor(ActorKind.staff, "nobody", SZ, frozenset())
    with make_uow(nobody) as uow, pytest.raises(PermissionDenied):
        service.get_subscription(uow, line.id)
    with make_uow(AGENT) as uow, pytest.raises(NotFound):
        service.get_subscription(uow, "0" * 32)


def test_org_path_prefix_is_not_a_substring_match(make_uow, catalog):
    # /T/GD/SZX/ is not inside /T/GD/SZ/ even though the text starts the same.
    with make_uow(SYSTEM) as uow:
        other = service.create_subscription(uow, new_line(org_path="/T/GD/SZX/"))
        uow.commit()
    with make_uow(AGENT) as uow, pytest.raises(NotFound):
        service.get_subscription(uow, other.id)


def test_find_terminated_lines(make_uow, line):
    with make_uow(AGENT) as uow:
        service.terminate(uow, line.id, "closed")
        uow.commit()
    with make_uow(AGENT) as uow:
        with pytest.raises(NotFound):
            service.find_by_service_number(uow, "13800138000")
        old = service.find_by_service_number(uow, "13800138000", include_terminated=True)
        assert old.id == line.id
        assert service.list_for_customer(uow, "C-1", include_terminated=False) == []
        assert len(service.list_for_customer(uow, "C-1")) == 1


def test_errors_render_in_chinese(make_uow, line):
    with make_uow(AGENT) as uow, pytest.raises(Conflict) as exc:
        service.add_vas(uow, line.id, "VAS_CLIP")
    assert exc.value.render("zh-CN") == "该号码已订购增值业务 VAS_CLIP"


@pytest.mark.parametrize(
    ("kind", "raw", "stored"),
    [
        ("mobile", "13912345678", "13912345678"),  # digits only: nothing to strip
        ("mobile", "139 1234 5678", "13912345678"),
        ("mobile", "+86 139-1234-5678", "13912345678"),
        ("mobile", "139\u30001234\t5678", "13912345678"),  # any whitespace goes
        ("fixed_line", "075588886666", "075588886666"),
    ],
)
def test_service_number_forms_without_a_database(kind, raw, stored):
    assert service.normalise_service_number(LineKind(kind), raw) == stored


@given(st.text(alphabet="0123456789+- 86", min_size=1, max_size=20))
def test_a_number_is_looked_up_in_every_form_it_may_be_stored_in(raw: str):
    """The plain-digits shortcut of ``_lookup_forms`` gives what trying each kind gives."""
    forms = {raw.strip()}
    for kind in LineKind:
        try:
            forms.add(service.normalise_service_number(kind, raw))
        except ValidationError:
            continue
    assert service._lookup_forms(raw) == sorted(f for f in forms if f)
