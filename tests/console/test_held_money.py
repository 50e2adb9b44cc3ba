"""Held money in the console: the scoped list with its filters, crediting a payment to a
service number's account, marking it for a refund at a hall's cash desk, refusals that
change nothing, CSRF, masking and the audited export."""

from __future__ import annotations

import csv
import io
import re

import pytest
from sqlalchemy import select

from teleserve.core.actor import SYSTEM
from teleserve.core.audit import AuditRecord
from teleserve.core.uow import UnitOfWork
from teleserve.inventory import service as inventory
from teleserve.payments import service as payments

from .conftest import in_scope, totp_now

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GZ01 = "/TS/GD/GZ/GZ01/"
SZ01 = "/TS/GD/SZ/SZ01/"
HELD = "/console/payments/held"


def _held(engine, key: str, org_path: str, number: str, amount: int = 5000, terminal="K1"):
    request = payments.PaymentRequest(
        key,
        channel="kiosk_cash",
        amount=amount,
        service_number=number,
        source_id="BOX-1",
        terminal_id=terminal,
        terminal_serial=key,
        org_path=org_path,
    )
    with UnitOfWork(engine, SYSTEM) as uow:
        [outcome] = payments.record_payments(uow, [request])
        uow.commit()
    assert outcome.status == "held"
    return outcome.payment_id


def _payment(engine, payment_id):
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        return payments.get_payment(uow, payment_id)


def _line_number(engine, customer_id: str) -> str:
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        return inventory.list_for_customer(uow, customer_id)[0].service_number


@pytest.fixture
def held(engine, seeded) -> dict[str, str]:
    """Two payments held at Tianhe hall (a customer's number, an unknown number) and
    one at Futian hall in Shenzhen."""
    number = _line_number(engine, in_scope(seeded, GZ01)[0].id)
    return {
        "known": _held(engine, "k-1", GZ01, number, 3000, terminal="GZ-K1"),
        "unknown": _held(engine, "k-2", GZ01, "13000000000", 2000, terminal="GZ-K2"),
        "shenzhen": _held(engine, "k-3", SZ01, "13900000000", 1000, terminal="SZ-K1"),
        "number": number,
    }


def _finance(login, frozen_clock):
    assert login("finance", code=totp_now(frozen_clock)).status_code == 303


def _token(client):
    return CSRF.search(client.get(HELD).text).group(1)


def test_the_list_is_scoped_filtered_and_masked(client, login, held, frozen_clock):
    login("gz01.cashier")  # payments.read, not payments.settle: the list, no forms
    page = client.get(HELD)
    assert page.status_code == 200
    assert held["known"] in page.text and held["unknown"] in page.text
    assert held["shenzhen"] not in page.text
    assert held["number"] not in page.text and "130****0000" in page.text
    assert "入账到号码</button>" not in page.text
    assert 'href="/console/payments/held"' not in page.text  # the menu is for settlers
    client.cookies.clear()
    _finance(login, frozen_clock)
    everything = client.get(HELD).text
    assert all(held[k] in everything for k in ("known", "unknown", "shenzhen"))
    assert 'href="/console/payments/held"' in everything
    by_terminal = client.get(HELD, params={"terminal": "GZ-K2"}).text
    assert held["unknown"] in by_terminal and held["known"] not in by_terminal
    by_reason = client.get(HELD, params={"reason": "amount_mismatch"}).text
    assert "没有符合条件的挂账缴费" in by_reason
    long_ago = client.get(HELD, params={"first": "2000-01-01", "last": "2000-01-02"}).text
    assert held["known"] not in long_ago
    bad = client.get(HELD, params={"reason": "bogus"})
    assert bad.status_code == 200 and 'class="message error"' in bad.text
    assert client.get(HELD, params={"first": "soon"}).text.count('class="message error"') == 1
    client.cookies.clear()
    login("gz01.agent")
    assert client.get(HELD).status_code == 200  # agents read payments too; no forms


def test_credit_to_a_number(client, login, held, engine, frozen_clock):
    _finance(login, frozen_clock)
    token = _token(client)
    # the number typed has no live line: a message, nothing changed
    missing = client.post(
        f"{HELD}/{held['unknown']}/credit", data={"csrf_token": token, "number": "13000000001"}
    )
    assert missing.status_code == 404 and "没有在用的用户号码为130****0001" in missing.text
    assert _payment(engine, held["unknown"]).status == "held"
    # empty: the number the payment named
    done = client.post(
        f"{HELD}/{held['known']}/credit",
        data={"csrf_token": token, "number": ""},
        follow_redirects=False,
    )
    assert done.status_code == 303
    view = _payment(engine, held["known"])
    assert view.status == "completed" and view.billing_account_id is not None
    shown = client.get(done.headers["location"]).text
    assert f"缴费{view.receipt_no}已入账到该号码的账户" in shown
    # credited again to the same account: the service changes nothing
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        balance = payments.account_balance(uow, view.billing_account_id).balance
    again = client.post(f"{HELD}/{held['known']}/credit", data={"csrf_token": token})
    assert again.status_code == 200
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        assert payments.account_balance(uow, view.billing_account_id).balance == balance
    # a typed number of a live line works the same for another held payment
    typed = client.post(
        f"{HELD}/{held['unknown']}/credit",
        data={"csrf_token": token, "number": held["number"]},
        follow_redirects=False,
    )
    assert typed.status_code == 303 and _payment(engine, held["unknown"]).status == "completed"
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        assert payments.check_ledger(uow) == []


def test_mark_for_refund_at_a_counter(client, login, held, engine, frozen_clock):
    _finance(login, frozen_clock)
    token = _token(client)
    url = f"{HELD}/{held['unknown']}/refund"
    assert client.post(url, data={"note": "no token"}).status_code == 403
    empty = client.post(url, data={"csrf_token": token, "note": ""})
    assert empty.status_code == 422 and 'class="message error"' in empty.text
    assert _payment(engine, held["unknown"]).status == "held"
    done = client.post(
        url, data={"csrf_token": token, "note": "wrong number typed"}, follow_redirects=False
    )
    assert done.status_code == 303
    view = _payment(engine, held["unknown"])
    assert view.status == "reversed" and view.reversal_reason == "wrong number typed"
    assert "已标记为在营业厅收银台退款" in client.get(done.headers["location"]).text
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        assert payments.system_account_balance(uow, "cash_desk:GZ01").balance == -2000
        assert payments.check_ledger(uow) == []
    assert held["unknown"] not in client.get(HELD).text
    assert client.post(url, data={"csrf_token": token, "note": "again"}).status_code == 409


def test_other_organisations_and_other_roles_are_refused(client, login, held, engine, frozen_clock):
    assert login("sz.admin", code=totp_now(frozen_clock)).status_code == 303
    token = _token(client)
    for action, data in (("credit", {"number": held["number"]}), ("refund", {"note": "x"})):
        answer = client.post(f"{HELD}/{held['known']}/{action}", data={"csrf_token": token, **data})
        assert answer.status_code == 404, action
    # Shenzhen's own: the number is Guangzhou's customer, whose account Shenzhen cannot see
    foreign = client.post(
        f"{HELD}/{held['shenzhen']}/credit", data={"csrf_token": token, "number": held["number"]}
    )
    assert foreign.status_code == 404 and _payment(engine, held["shenzhen"]).status == "held"
    client.cookies.clear()
    login("gz01.cashier")
    refused = client.post(
        f"{HELD}/{held['known']}/refund", data={"csrf_token": _token(client), "note": "x"}
    )
    assert refused.status_code == 403 and _payment(engine, held["known"]).status == "held"


def test_the_export_is_masked_and_audited(client, login, held, engine, frozen_clock):
    _finance(login, frozen_clock)
    answer = client.get(f"{HELD}/export/csv", params={"terminal": "GZ-K2"})
    assert answer.status_code == 200
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0][0] == "收据号" and rows[0][6] == "服务号码"
    assert len(rows) == 2 and rows[1][6] == "130****0000" and rows[1][3] == "20.0"
    assert held["number"] not in answer.text
    assert client.get(f"{HELD}/export/xlsx").status_code == 200
    with engine.connect() as conn:
        audits = conn.scalars(
            select(AuditRecord.detail)
            .where(AuditRecord.subject_id == "held_payments")
            .order_by(AuditRecord.id)  # in the order written
        ).all()
    assert len(audits) == 2 and '"terminal":"GZ-K2"' in audits[0]
    assert client.get(f"{HELD}/export/pdf").status_code == 404
