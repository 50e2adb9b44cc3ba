"""TMF676 Payment Management over HTTP: list / get / POST with an Idempotency-Key."""

from __future__ import annotations

from datetime import datetime

import jsonschema_rs
import pytest

from teleserve.core.actor import Actor, ActorKind
from teleserve.payments import service as payments
from teleserve.payments.schemas import CustomerAccountSpec, PaymentRequest
from tests.web.tmf_conformance import load_spec

from .helpers import snapshot

BASE = "/tmf-api/paymentManagement/v4"
SPEC = "TMF676"
READ = "payments.read"
RECORD = "payments.record"


@pytest.fixture
def world(tmf, make_uow):
    """Ledger accounts GZBA (customer GZC, at GZ's hall) and SZBA (SZC, at SZ); a kiosk
    cash payment to each, a card payment to GZBA and a held one (service number only)."""
    gz, sz, hall = tmf.orgs["GZ"].path, tmf.orgs["SZ"].path, tmf.orgs["GZTH"].path
    with make_uow() as uow:
        payments.ensure_customer_accounts(
            uow,
            [CustomerAccountSpec("GZBA", "GZC", hall), CustomerAccountSpec("SZBA", "SZC", sz)],
        )
        uow.commit()
    kiosk = Actor(ActorKind.terminal, "T1", gz, frozenset({RECORD, READ}))
    with make_uow(kiosk) as uow:
        outcomes = payments.record_payments(
            uow,
            [
                PaymentRequest(
                    "tsp:T1:1",
                    "kiosk_cash",
                    5000,
                    billing_account_id="GZBA",
                    source_id="BOX1",
                    terminal_id="T1",
                    terminal_serial="1",
                    org_path=hall,
                ),
                PaymentRequest(
                    "tsp:T1:2",
                    "kiosk_card",
                    2050,
                    billing_account_id="GZBA",
                    terminal_id="T1",
                    terminal_serial="2",
                    card_auth_code="A12345",
                    card_rrn="123456789012",
                    org_path=hall,
                ),
                PaymentRequest(
                    "tsp:T1:3",
                    "kiosk_cash",
                    1000,
                    service_number="13800138000",
                    source_id="BOX1",
                    terminal_id="T1",
                    terminal_serial="3",
                    org_path=hall,
                ),
            ],
        )
        uow.commit()
    szkiosk = Actor(ActorKind.terminal, "T2", sz, frozenset({RECORD, READ}))
    with make_uow(szkiosk) as uow:
        [sz_payment] = payments.record_payments(
            uow,
            [
                PaymentRequest(
                    "tsp:T2:1",
                    "kiosk_cash",
                    3000,
                    billing_account_id="SZBA",
                    source_id="BOX2",
                    terminal_id="T2",
                    terminal_serial="1",
                )
            ],
        )
        uow.commit()
    return {
        "cash": outcomes[0].payment_id,
        "card": outcomes[1].payment_id,
        "held": outcomes[2].payment_id,
        "sz": sz_payment.payment_id,
    }


def _body(**changes):
    body = {
        "account": {"id": "GZBA", "@referredType": "BillingAccount"},
        "totalAmount": {"unit": "CNY", "value": 12.34},
        "paymentMethod": {"id": "alipay", "@type": "DigitalWallet"},
        "correlatorId": "ORDER-1",
        "@type": "Payment",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None
    return parsed


def test_without_a_token_every_route_is_401(tmf, world):
    for method, path in (
        ("get", "/payment"),
        ("get", f"/payment/{world['cash']}"),
        ("post", "/payment"),
    ):
        answer = tmf.client.request(method, BASE + path, json=_body())
        assert answer.status_code == 401
        assert answer.json()["@type"] == "Error"


def test_scopes_are_checked(tmf, world):
    other = tmf.bearer("GZ", "customers.read")
    assert tmf.client.get(f"{BASE}/payment", headers=other).status_code == 403
    assert tmf.client.get(f"{BASE}/payment/{world['cash']}", headers=other).status_code == 403
    reader = tmf.bearer("GZ", READ)
    answer = tmf.client.post(
        f"{BASE}/payment", json=_body(), headers={**reader, "Idempotency-Key": "k1"}
    )
    assert answer.status_code == 403
    assert answer.json()["code"] == "forbidden"


def test_list_is_scoped_and_counted(tmf, world):
    answer = tmf.client.get(f"{BASE}/payment", headers=tmf.bearer("GZ", READ))
    assert answer.status_code == 200
    assert answer.headers["X-Total-Count"] == "3"
    assert answer.headers["X-Result-Count"] == "3"
    ids = {p["id"] for p in answer.json()}
    assert ids == {world["cash"], world["card"], world["held"]}
    sz = tmf.client.get(f"{BASE}/payment", headers=tmf.bearer("SZ", READ))
    assert [p["id"] for p in sz.json()] == [world["sz"]]
    assert sz.headers["X-Total-Count"] == "1"
    operator = tmf.client.get(f"{BASE}/payment", headers=tmf.bearer("TS", READ))
    assert operator.headers["X-Total-Count"] == "4"


def test_another_citys_payment_is_404(tmf, world):
    answer = tmf.client.get(f"{BASE}/payment/{world['cash']}", headers=tmf.bearer("SZ", READ))
    assert answer.status_code == 404
    assert answer.json()["code"] == "payment_not_found"
    assert tmf.client.get(f"{BASE}/payment/nope", headers=tmf.bearer("GZ", READ)).status_code == 404


def test_a_payment_maps_to_the_tmf_resource(tmf, world):
    headers = tmf.bearer("GZ", READ)
    cash = tmf.client.get(f"{BASE}/payment/{world['cash']}", headers=headers).json()
    assert cash["@type"] == "Payment"
    assert cash["href"].endswith(f"{BASE}/payment/{world['cash']}")
    assert cash["status"] == "completed"
    assert cash["amount"] == {"unit": "CNY", "value": 50.0}
    assert cash["totalAmount"] == {"unit": "CNY", "value": 50.0}
    assert cash["channel"]["id"] == "kiosk_cash"
    assert cash["paymentMethod"] == {"@type": "Cash"}
    assert cash["account"]["id"] == "GZBA"
    assert cash["account"]["href"].endswith("/tmf-api/accountManagement/v4/billingAccount/GZBA")
    assert cash["name"].startswith("R")
    assert _aware(cash["paymentDate"]) == _aware(cash["statusDate"])
    card = tmf.client.get(f"{BASE}/payment/{world['card']}", headers=headers).json()
    assert card["paymentMethod"] == {"@type": "BankCard"}
    assert card["authorizationCode"] == "A12345"
    assert card["amount"]["value"] == 20.5
    # Nothing of the card but the authorisation code: no number, no RRN.
    assert "123456789012" not in str(card)
    held = tmf.client.get(f"{BASE}/payment/{world['held']}", headers=headers).json()
    assert held["status"] == "held"
    # Only a service number: the money waits in the suspense account for staff.
    assert held["account"] == {
        "id": "suspense",
        "name": "suspense",
        "@referredType": "LedgerAccount",
    }


def test_filters_fields_and_paging(tmf, world):
    headers = tmf.bearer("GZ", READ)

    def ids(query):
        answer = tmf.client.get(f"{BASE}/payment?{query}", headers=headers)
        assert answer.status_code == 200, answer.json()
        return {p["id"] for p in answer.json()}, answer

    assert ids("status=held")[0] == {world["held"]}
    assert ids("status=completed,held")[0] == {world["cash"], world["card"], world["held"]}
    assert ids("account.id=GZBA")[0] == {world["cash"], world["card"]}
    assert ids("channel.id=kiosk_card")[0] == {world["card"]}
    assert ids("channel=kiosk_cash")[0] == {world["cash"], world["held"]}
    assert ids("paymentDate.gte=2000-01-01T00:00:00Z")[0] == {
        world["cash"],
        world["card"],
        world["held"],
    }
    assert ids("paymentDate.lt=2000-01-01T00:00:00Z")[0] == set()
    found, answer = ids("limit=2&offset=1&fields=status")
    assert len(found) == 2
    assert answer.headers["X-Total-Count"] == "3"
    assert answer.headers["X-Result-Count"] == "2"
    assert set(answer.json()[0]) == {"id", "href", "@type", "status"}
    single = tmf.client.get(f"{BASE}/payment/{world['cash']}?fields=amount", headers=headers)
    assert set(single.json()) == {"id", "href", "@type", "amount"}


@pytest.mark.parametrize(
    ("query", "status"),
    [("colour=red", 400), ("limit=x", 400), ("status.gt=a", 422), ("paymentDate.gte=soon", 422)],
)
def test_bad_list_parameters(tmf, world, query, status):
    answer = tmf.client.get(f"{BASE}/payment?{query}", headers=tmf.bearer("GZ", READ))
    assert answer.status_code == status
    assert answer.json()["@type"] == "Error"


def test_post_records_a_payment_once(tmf, world, engine):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "order-1"}
    first = tmf.client.post(f"{BASE}/payment", json=_body(), headers=headers)
    assert first.status_code == 201, first.json()
    created = first.json()
    assert first.headers["Location"] == created["href"]
    assert "Idempotent-Replayed" not in first.headers
    assert created["status"] == "completed"
    assert created["totalAmount"] == {"unit": "CNY", "value": 12.34}
    assert created["channel"]["id"] == "api"
    assert created["correlatorId"] == "ORDER-1"
    assert created["paymentMethod"] == {"@type": "External"}
    before = snapshot(engine)
    # A retry (same key, same payment; 12.340 is the same amount) gets the first answer.
    again = tmf.client.post(
        f"{BASE}/payment",
        json=_body(totalAmount={"unit": "CNY", "value": "12.340"}),
        headers=headers,
    )
    assert again.status_code == 201
    assert again.json() == created
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == created["href"]
    assert snapshot(engine) == before
    # It is a real payment: readable, and the account's balance has it.
    reader = tmf.bearer("GZ", READ)
    read = tmf.client.get(created["href"].split("testserver")[-1], headers=reader)
    assert read.json() == created
    with tmf.make_uow() as uow:
        assert payments.account_balance(uow, "GZBA").balance == 5000 + 2050 + 1234


def test_a_retry_answers_the_first_answer_after_a_reversal(tmf, world, make_uow):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "order-2"}
    created = tmf.client.post(f"{BASE}/payment", json=_body(), headers=headers).json()
    with make_uow() as uow:
        payments.reverse_payment(uow, created["id"], "customer changed their mind")
        uow.commit()
    again = tmf.client.post(f"{BASE}/payment", json=_body(), headers=headers)
    assert again.json() == created  # the first answer, as DESIGN.md section 5 says
    now = tmf.client.get(f"{BASE}/payment/{created['id']}", headers=tmf.bearer("GZ", READ))
    assert now.json()["status"] == "reversed"


def test_same_key_with_another_body_is_409_and_changes_nothing(tmf, world, engine):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "order-3"}
    assert tmf.client.post(f"{BASE}/payment", json=_body(), headers=headers).status_code == 201
    before = snapshot(engine)
    other = tmf.client.post(
        f"{BASE}/payment",
        json=_body(totalAmount={"unit": "CNY", "value": 99}),
        headers={**headers, "Accept-Language": "en"},
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_conflict"
    assert snapshot(engine) == before


def test_keys_belong_to_their_client(tmf, world):
    """Two integrators choosing the same key record two payments."""
    first = tmf.client.post(
        f"{BASE}/payment",
        json=_body(),
        headers={**tmf.bearer("GZ", RECORD), "Idempotency-Key": "1"},
    )
    second = tmf.client.post(
        f"{BASE}/payment",
        json=_body(),
        headers={**tmf.bearer("GZ", RECORD), "Idempotency-Key": "1"},
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


def test_money_for_an_unknown_account_is_held_not_refused(tmf, world):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "order-4"}
    answer = tmf.client.post(f"{BASE}/payment", json=_body(account={"id": "NOPE"}), headers=headers)
    assert answer.status_code == 201
    assert answer.json()["status"] == "held"
    assert answer.json()["account"]["id"] == "NOPE"


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"totalAmount": {"unit": "CNY", "value": 1.234}}, 422, "invalid_money"),
        ({"totalAmount": {"unit": "USD", "value": 1}}, 422, "invalid_currency"),
        ({"totalAmount": {"unit": "CNY", "value": 0}}, 422, "invalid_amount"),
        ({"totalAmount": {"unit": "CNY", "value": -5}}, 422, "invalid_amount"),
        ({"totalAmount": None}, 422, "missing_field"),
        ({"amount": {"unit": "CNY", "value": 10}}, 422, "invalid_money"),
        ({"account": None}, 422, "missing_field"),
        ({"account": {"name": "x"}}, 422, "missing_field"),
        ({"account": "GZBA"}, 422, "invalid_field"),
        ({"paymentMethod": None}, 422, "missing_field"),
        (
            {"paymentMethod": {"@type": "BankCard", "cardNumber": "6222020000000000"}},
            422,
            "payment_details_refused",
        ),
        ({"channel": {"id": "kiosk_cash"}}, 422, "invalid_channel"),
        ({"correlatorId": "x" * 65}, 422, "invalid_field"),
        ({"correlatorId": 5}, 422, "invalid_field"),
        ({"status": "completed"}, 422, "unsupported_attribute"),
        ({"taxAmount": {"unit": "CNY", "value": 1}}, 422, "unsupported_attribute"),
    ],
)
def test_bad_bodies_are_refused_and_nothing_is_written(tmf, world, engine, changes, status, code):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "bad"}
    before = snapshot(engine)
    answer = tmf.client.post(f"{BASE}/payment", json=_body(**changes), headers=headers)
    assert answer.status_code == status, answer.json()
    assert answer.json()["code"] == code
    assert answer.json()["@type"] == "Error"
    assert snapshot(engine) == before


def test_amount_alone_is_accepted_and_equal_amounts_agree(tmf, world):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "net"}
    body = _body(totalAmount=None, amount={"unit": "CNY", "value": 5})
    answer = tmf.client.post(f"{BASE}/payment", json=body, headers=headers)
    assert answer.status_code == 201
    assert answer.json()["totalAmount"]["value"] == 5


@pytest.mark.parametrize(
    ("key", "code"), [(None, "missing_idempotency_key"), ("x" * 101, "invalid_idempotency_key")]
)
def test_the_idempotency_key_is_required(tmf, world, engine, key, code):
    headers = tmf.bearer("GZ", RECORD)
    if key is not None:
        headers["Idempotency-Key"] = key
    before = snapshot(engine)
    answer = tmf.client.post(f"{BASE}/payment", json=_body(), headers=headers)
    assert answer.status_code == 400
    assert answer.json()["code"] == code
    assert snapshot(engine) == before


def test_malformed_json_is_400(tmf, world):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "j"}
    answer = tmf.client.post(f"{BASE}/payment", content=b"{nope", headers=headers)
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_json"


def test_errors_speak_the_requests_language(tmf, world):
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "lang"}
    body = _body(totalAmount={"unit": "CNY", "value": 1.234})
    en = tmf.client.post(f"{BASE}/payment", json=body, headers={**headers, "Accept-Language": "en"})
    zh = tmf.client.post(
        f"{BASE}/payment", json=body, headers={**headers, "Accept-Language": "zh-CN"}
    )
    assert en.json()["message"] == "totalAmount has more than two decimals"
    assert zh.json()["reason"] == en.json()["reason"]
    assert zh.json()["message"] != en.json()["message"]
    assert "totalAmount" in zh.json()["message"]


def test_refund_and_unknown_methods_are_not_routed(tmf, world):
    headers = tmf.bearer("GZ", READ, RECORD)
    assert tmf.client.get(f"{BASE}/refund", headers=headers).status_code == 404
    answer = tmf.client.delete(f"{BASE}/payment/{world['cash']}", headers=headers)
    assert answer.status_code == 405
    assert answer.json()["@type"] == "Error"


def _conforms(definition, instance):
    """``instance`` is valid against the spec's ``definition`` (formats checked)."""
    raw = load_spec(SPEC)
    schema = {"$ref": f"#/definitions/{definition}", "definitions": raw["definitions"]}
    jsonschema_rs.Draft4Validator(schema, validate_formats=True).validate(instance)


def test_answers_conform_to_the_spec(tmf, world):
    listed = tmf.client.get(f"{BASE}/payment", headers=tmf.bearer("GZ", READ)).json()
    assert len(listed) == 3  # cash, card and held (service number only)
    for payment in listed:
        _conforms("Payment", payment)
    headers = {**tmf.bearer("GZ", RECORD), "Idempotency-Key": "spec"}
    created = tmf.client.post(f"{BASE}/payment", json=_body(), headers=headers).json()
    _conforms("Payment", created)
