import pytest

from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.customers import service

from .conftest import GZ_AGENT, GZ_HALL, KIOSK, SZ_AGENT, make_id


@pytest.fixture
def customer_id(make_uow) -> str:
    with make_uow(GZ_AGENT) as uow:
        detail = service.register_individual(
            uow, name="张三", id_number=make_id(), org_unit_id="GZ01", org_path=GZ_HALL
        )
        uow.commit()
    return detail.id


def test_open_and_close_accounts(make_uow, customer_id):
    with make_uow(GZ_AGENT) as uow:
        prepaid = service.open_billing_account(uow, customer_id, "prepaid")
        postpaid = service.open_billing_account(
            uow, customer_id, "postpaid", credit_limit=200_00, bill_cycle_day=15
        )
        uow.commit()
    assert prepaid.number.startswith("BA") and prepaid.number != postpaid.number
    assert (prepaid.kind, prepaid.credit_limit, prepaid.status) == ("prepaid", 0, "active")
    assert (postpaid.credit_limit, postpaid.bill_cycle_day) == (20000, 15)
    assert postpaid.org_path == GZ_HALL
    with make_uow(GZ_AGENT) as uow:
        closed = service.close_billing_account(uow, prepaid.id)
        uow.commit()
    assert closed.status == "closed" and closed.closed_at is not None
    with make_uow(GZ_AGENT) as uow:
        with pytest.raises(Conflict):
            service.close_billing_account(uow, prepaid.id)
        listed = service.list_billing_accounts(uow, customer_id)
        assert [(a.id, a.status) for a in listed] == [
            (prepaid.id, "closed"),
            (postpaid.id, "active"),
        ]
        assert service.get_billing_account(uow, postpaid.id) == postpaid


def test_account_rules(make_uow, customer_id):
    bad = [
        dict(kind="hybrid"),
        dict(kind="prepaid", credit_limit=1),
        dict(kind="postpaid", credit_limit=-1),
        dict(kind="postpaid", credit_limit=1.5),
        dict(kind="postpaid", bill_cycle_day=0),
        dict(kind="postpaid", bill_cycle_day=29),
        dict(kind="postpaid", bill_cycle_day=True),
    ]
    for values in bad:
        with make_uow(GZ_AGENT) as uow, pytest.raises(ValidationError):
            service.open_billing_account(uow, customer_id, **values)
    with make_uow(GZ_AGENT) as uow, pytest.raises(NotFound):
        service.open_billing_account(uow, "f" * 32, "prepaid")


def test_accounts_are_scoped(make_uow, customer_id):
    with make_uow(GZ_AGENT) as uow:
        account = service.open_billing_account(uow, customer_id, "prepaid")
        uow.commit()
    with make_uow(SZ_AGENT) as uow:
        for call in (
            lambda: service.open_billing_account(uow, customer_id, "prepaid"),
            lambda: service.close_billing_account(uow, account.id),
            lambda: service.get_billing_account(uow, account.id),
            lambda: service.list_billing_accounts(uow, customer_id),
        ):
            with pytest.raises(NotFound):
                call()
    with make_uow(KIOSK) as uow, pytest.raises(PermissionDenied):
        service.close_billing_account(uow, account.id)
