"""TMF681 communicationMessage (read-only) over HTTP."""

from __future__ import annotations

from datetime import datetime

import jsonschema_rs
import pytest

from teleserve.notify import service as notify
from tests.web.tmf_conformance import load_spec

BASE = "/tmf-api/communicationManagement/v4"
SPEC = "TMF681"
READ = "notify.read"


@pytest.fixture
def messages(tmf, make_uow):
    """GZ: an OTP SMS sent, a payment SMS queued, an email failed after 3 tries, an SMS
    queued again after a failed try. SZ: one SMS. None: an OTP before login."""
    gz, hall, sz = tmf.orgs["GZ"].path, tmf.orgs["GZTH"].path, tmf.orgs["SZ"].path
    ids: dict[str, str] = {}
    with make_uow() as uow:
        ids["sent"] = notify.queue_sms(
            uow,
            to="+86 138-0013-8000",
            template="otp",
            params={"code": "482913"},
            locale="en",
            customer_id="C1",
            org_path=hall,
        )
        ids["queued"] = notify.queue_sms(
            uow,
            to="13900139000",
            template="payment_received",
            params={"number": "13900139000", "amount": 5000, "balance": 12000},
            org_path=gz,
        )
        ids["failed"] = notify.queue_email(
            uow,
            to="Zhang.San@Example.com",
            template="password_changed",
            params={"number": "13800138000"},
            locale="zh-CN",
            customer_id="C1",
            org_path=gz,
        )
        ids["retrying"] = notify.queue_sms(
            uow, to="13700137000", template="otp", params={"code": "111111"}, org_path=gz
        )
        ids["sz"] = notify.queue_sms(
            uow, to="13600136000", template="otp", params={"code": "222222"}, org_path=sz
        )
        ids["nobody"] = notify.queue_sms(
            uow, to="13500135000", template="otp", params={"code": "333333"}
        )
        uow.commit()
    with make_uow() as uow:
        notify.deliver(uow, ids["sent"], attempt=1)
        notify.mark_failed(uow, ids["failed"], "mailbox unavailable", attempt=3)
        uow.commit()
    with make_uow() as uow:
        # What the outbox records after a failed try that it will retry.
        from sqlalchemy import update

        from teleserve.notify.models import NotifyMessage

        uow.session.execute(
            update(NotifyMessage).where(NotifyMessage.id == ids["retrying"]).values(attempts=1)
        )
        uow.commit()
    return ids


def _get(tmf, path, token):
    return tmf.client.get(BASE + path, headers=token)


def test_without_a_token_401_and_without_the_scope_403(tmf, messages):
    for path in ("/communicationMessage", f"/communicationMessage/{messages['sent']}"):
        assert tmf.client.get(BASE + path).status_code == 401
        assert _get(tmf, path, tmf.bearer("GZ", "customers.read")).status_code == 403


def test_a_message_maps_to_the_tmf_resource_with_masked_recipients(tmf, messages):
    token = tmf.bearer("GZ", READ)
    sent = _get(tmf, f"/communicationMessage/{messages['sent']}", token).json()
    assert sent["@type"] == "CommunicationMessage"
    assert sent["href"].endswith(f"{BASE}/communicationMessage/{messages['sent']}")
    assert sent["messageType"] == "SMS"
    assert sent["state"] == "completed"
    assert sent["receiver"] == [
        {
            "phoneNumber": "138****8000",
            "party": {"id": "C1", "role": "customer", "@referredType": "Customer"},
        }
    ]
    assert "482913" not in str(sent)  # the one-time code is masked in the content
    assert sent["content"].startswith("Your verification code is ")
    assert datetime.fromisoformat(sent["sendTime"]).tzinfo is not None
    assert {"name": "template", "valueType": "string", "value": "otp"} in sent["characteristic"]
    queued = _get(tmf, f"/communicationMessage/{messages['queued']}", token).json()
    assert queued["state"] == "initial"
    assert "content" not in queued and "sendTime" not in queued  # not rendered yet
    failed = _get(tmf, f"/communicationMessage/{messages['failed']}", token).json()
    assert failed["state"] == "failed"
    assert failed["messageType"] == "Email"
    assert failed["receiver"][0]["email"] != "Zhang.San@example.com"
    assert "@example.com" in failed["receiver"][0]["email"]
    assert failed["subject"]
    retrying = _get(tmf, f"/communicationMessage/{messages['retrying']}", token).json()
    assert retrying["state"] == "inProgress"


def test_list_is_scoped_and_counted(tmf, messages):
    answer = _get(tmf, "/communicationMessage", tmf.bearer("GZ", READ))
    assert answer.status_code == 200
    assert answer.headers["X-Total-Count"] == "4"
    assert {m["id"] for m in answer.json()} == {
        messages[k] for k in ("sent", "queued", "failed", "retrying")
    }
    sz = _get(tmf, "/communicationMessage", tmf.bearer("SZ", READ))
    assert [m["id"] for m in sz.json()] == [messages["sz"]]
    # The operator's client sees every city; a message without an organisation (an OTP
    # before the customer is known) is for operator-wide staff only, never an API client.
    operator = _get(tmf, "/communicationMessage", tmf.bearer("TS", READ))
    assert operator.headers["X-Total-Count"] == "5"
    assert messages["nobody"] not in {m["id"] for m in operator.json()}


def test_another_citys_message_is_404(tmf, messages):
    answer = _get(tmf, f"/communicationMessage/{messages['sent']}", tmf.bearer("SZ", READ))
    assert answer.status_code == 404
    assert answer.json()["@type"] == "Error"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=completed", {"sent"}),
        ("state=initial,inProgress", {"queued", "retrying"}),
        ("state.ne=completed", {"queued", "failed", "retrying"}),
        ("messageType=Email", {"failed"}),
        ("messageType=SMS", {"sent", "queued", "retrying"}),
        ("sendTime.gte=2000-01-01T00:00:00Z", {"sent"}),
        ("sendTime.lt=2000-01-01T00:00:00Z", set()),
        ("receiver.phoneNumber=%2B8613800138000", {"sent"}),
        ("receiver.phoneNumber=138 0013 8000", {"sent"}),
        ("receiver.email=Zhang.San@EXAMPLE.com", {"failed"}),
        ("receiver.party.id=C1", {"sent", "failed"}),
    ],
)
def test_filters(tmf, messages, query, expected):
    answer = _get(tmf, f"/communicationMessage?{query}", tmf.bearer("GZ", READ))
    assert answer.status_code == 200, answer.json()
    assert {m["id"] for m in answer.json()} == {messages[k] for k in expected}
    assert answer.headers["X-Total-Count"] == str(len(expected))


def test_fields_and_paging(tmf, messages):
    answer = _get(
        tmf, "/communicationMessage?fields=state&limit=1&offset=1", tmf.bearer("GZ", READ)
    )
    assert answer.headers["X-Total-Count"] == "4"
    assert answer.headers["X-Result-Count"] == "1"
    assert set(answer.json()[0]) == {"id", "href", "@type", "state"}
    # Newest first, a stable order: offset 1 is the second of the full list.
    full = _get(tmf, "/communicationMessage", tmf.bearer("GZ", READ)).json()
    assert answer.json()[0]["id"] == full[1]["id"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("state=sending", 400),
        ("template=otp", 400),
        ("messageType=fax", 422),
        ("sendTime.gte=yesterday", 422),
        ("state.gt=initial", 422),
    ],
)
def test_bad_filters(tmf, messages, query, status):
    answer = _get(tmf, f"/communicationMessage?{query}", tmf.bearer("GZ", READ))
    assert answer.status_code == status
    assert answer.json()["@type"] == "Error"


def test_errors_speak_the_requests_language(tmf, messages):
    token = tmf.bearer("GZ", READ)
    en = tmf.client.get(
        f"{BASE}/communicationMessage?state=sending", headers={**token, "Accept-Language": "en"}
    )
    zh = tmf.client.get(
        f"{BASE}/communicationMessage?state=sending", headers={**token, "Accept-Language": "zh-CN"}
    )
    assert en.json()["message"] == "Invalid value for the filter state"
    assert zh.json()["message"] != en.json()["message"]
    assert "state" in zh.json()["message"]


def test_writing_is_not_routed(tmf, messages):
    token = tmf.bearer("GZ", READ)
    post = tmf.client.post(f"{BASE}/communicationMessage", json={}, headers=token)
    assert post.status_code == 405
    assert post.json()["@type"] == "Error"
    path = f"{BASE}/communicationMessage/{messages['sent']}"
    assert tmf.client.patch(path, json={}, headers=token).status_code == 405
    assert tmf.client.delete(path, headers=token).status_code == 405


def _conforms(definition, instance):
    """``instance`` is valid against the spec's ``definition`` (formats checked)."""
    raw = load_spec(SPEC)
    schema = {"$ref": f"#/definitions/{definition}", "definitions": raw["definitions"]}
    jsonschema_rs.Draft4Validator(schema, validate_formats=True).validate(instance)


def test_answers_conform_to_the_spec(tmf, messages):
    listed = _get(tmf, "/communicationMessage", tmf.bearer("GZ", READ)).json()
    assert len(listed) == 4
    for message in listed:
        _conforms("CommunicationMessage", message)
