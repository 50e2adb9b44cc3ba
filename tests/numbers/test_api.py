"""TMF685 resource pools and reservations of the number pool over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta

import jsonschema_rs
import pytest

from teleserve.core.actor import Actor, ActorKind
from teleserve.numbers import service as numbers
from teleserve.numbers.models import PoolNumber
from tests.web.tmf_conformance import load_spec

from .conftest import count_rows

BASE = "/tmf-api/resourcePoolManagement/v1"
SPEC = "TMF685"
READ = "numbers.read"
RESERVE = "numbers.reserve"
GZ_NUMBER = "13800100003"
SZ_NUMBER = "13901000001"


@pytest.fixture
def pools(tmf, make_uow, frozen_clock):
    """GZ: a mobile range 13800100000-019 (one number reserved by customer C1, one
    assigned); SZ: 13901000000-009."""
    gz, sz = tmf.orgs["GZ"].path, tmf.orgs["SZ"].path
    with make_uow() as uow:
        numbers.install_default_grades(uow)
        gz_range = numbers.create_range(
            uow, org_path=gz, kind="mobile", prefix="13800100", start="000", end="019", name="GZ A"
        )
        sz_range = numbers.create_range(
            uow, org_path=sz, kind="mobile", prefix="13901000", start="000", end="009"
        )
        numbers.reserve(uow, "13800100001", "customer:C1")
        numbers.reserve(uow, "13800100002", "order:SO1")
        numbers.assign(
            uow, number="13800100002", holder="order:SO1", id_index="a" * 64, customer_id="C2"
        )
        numbers.reserve(uow, SZ_NUMBER, "customer:C9")
        uow.commit()
    return {"gz": gz_range.id, "sz": sz_range.id}


def _reservation(number=GZ_NUMBER, **changes):
    body = {
        "relatedParty": {"id": "C7", "@referredType": "Customer"},
        "reservationItem": [
            {"quantity": 1, "appliedCapacityAmount": {"resource": [{"id": number}]}}
        ],
        "@type": "Reservation",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def _status(make_uow, number):
    with make_uow() as uow:
        row = uow.session.query(PoolNumber).filter_by(value=number).one()
        return row.status, row.holder


def test_without_a_token_401_and_without_the_scope_403(tmf, pools):
    routes = [
        ("get", "/resourcePool"),
        ("get", f"/resourcePool/{pools['gz']}"),
        ("get", "/reservation"),
        ("get", "/reservation/13800100001"),
        ("post", "/reservation"),
        ("patch", "/reservation/13800100001"),
    ]
    other = tmf.bearer("GZ", "customers.read")
    for method, path in routes:
        assert tmf.client.request(method, BASE + path, json={}).status_code == 401
        answer = tmf.client.request(method, BASE + path, json=_reservation(), headers=other)
        assert answer.status_code == 403, (method, path, answer.json())


def test_pools_show_capacity_by_state(tmf, pools):
    token = tmf.bearer("GZ", READ)
    answer = tmf.client.get(f"{BASE}/resourcePool", headers=token)
    assert answer.status_code == 200
    assert answer.headers["X-Total-Count"] == "1"
    [pool] = answer.json()
    assert pool["id"] == pools["gz"]
    assert pool["href"].endswith(f"{BASE}/resourcePool/{pools['gz']}")
    assert pool["@type"] == "NumberPool"
    assert pool["@baseType"] == "ResourcePool"
    assert pool["relatedParty"] == "GZ"
    assert pool["description"] == "GZ A"
    assert pool["numberKind"] == "mobile"
    assert pool["resourceCollection"][0]["objectId"] == "13800100000-13800100019"
    assert pool["capacity"] == {
        "total": 20,
        "free": 18,
        "reserved": 1,
        "assigned": 1,
        "quarantine": 0,
    }
    single = tmf.client.get(f"{BASE}/resourcePool/{pools['gz']}", headers=token)
    assert single.json() == pool


def test_a_lapsed_reservation_counts_as_free_at_once(tmf, pools, frozen_clock):
    frozen_clock.advance(minutes=31)
    token = tmf.bearer("GZ", READ)
    pool = tmf.client.get(f"{BASE}/resourcePool/{pools['gz']}", headers=token).json()
    assert pool["capacity"]["free"] == 19
    assert pool["capacity"]["reserved"] == 0
    answer = tmf.client.get(f"{BASE}/reservation", headers=token)
    assert answer.headers["X-Total-Count"] == "0"
    assert tmf.client.get(f"{BASE}/reservation/13800100001", headers=token).status_code == 404


def test_pools_are_scoped(tmf, pools):
    sz = tmf.bearer("SZ", READ)
    answer = tmf.client.get(f"{BASE}/resourcePool", headers=sz)
    assert [p["id"] for p in answer.json()] == [pools["sz"]]
    assert answer.headers["X-Total-Count"] == "1"
    missing = tmf.client.get(f"{BASE}/resourcePool/{pools['gz']}", headers=sz)
    assert missing.status_code == 404
    assert missing.json()["code"] == "range_not_found"
    province = tmf.bearer("GD", READ)
    assert tmf.client.get(f"{BASE}/resourcePool", headers=province).headers["X-Total-Count"] == "2"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("relatedParty=GZ", {"gz"}),
        ("relatedParty=GZ,SZ", {"gz", "sz"}),
        ("relatedParty=GD", set()),
        ("numberKind=mobile", {"gz", "sz"}),
        ("numberKind=fixed", set()),
        ("limit=1&offset=1", {"sz"}),
    ],
)
def test_pool_filters_and_paging(tmf, pools, query, expected):
    answer = tmf.client.get(f"{BASE}/resourcePool?{query}", headers=tmf.bearer("GD", READ))
    assert answer.status_code == 200, answer.json()
    assert {p["id"] for p in answer.json()} == {pools[k] for k in expected}


@pytest.mark.parametrize(
    ("query", "status"),
    [("numberKind=satellite", 422), ("relatedParty.ne=GZ", 422), ("colour=red", 400)],
)
def test_bad_pool_filters(tmf, pools, query, status):
    answer = tmf.client.get(f"{BASE}/resourcePool?{query}", headers=tmf.bearer("GZ", READ))
    assert answer.status_code == status
    assert answer.json()["@type"] == "Error"


def test_reservations_list_and_read(tmf, pools):
    token = tmf.bearer("GZ", READ)
    answer = tmf.client.get(f"{BASE}/reservation", headers=token)
    assert answer.status_code == 200
    assert answer.headers["X-Total-Count"] == "1"  # the assigned one is no reservation now
    [reservation] = answer.json()
    assert reservation["id"] == "13800100001"
    assert reservation["@type"] == "Reservation"
    assert reservation["reservationState"] == "reserved"
    assert reservation["relatedParty"] == {
        "id": "C1",
        "role": "holder",
        "@referredType": "Customer",
    }
    assert datetime.fromisoformat(reservation["valid_for"]).tzinfo is not None
    [item] = reservation["reservationItem"]
    assert item["quantity"] == 1
    assert item["appliedCapacityAmount"]["resource"][0]["id"] == "13800100001"
    assert item["resourceCapacity"]["resourcePool"]["id"] == pools["gz"]
    # The specification answers GET by id with an array (TMF685 v1).
    single = tmf.client.get(f"{BASE}/reservation/13800100001", headers=token)
    assert single.status_code == 200
    assert single.json() == [reservation]
    fields = tmf.client.get(f"{BASE}/reservation/13800100001?fields=valid_for", headers=token)
    assert set(fields.json()[0]) == {"id", "href", "@type", "valid_for"}


@pytest.mark.parametrize("number", [SZ_NUMBER, "13800100002", "13800100005", "garbage"])
def test_no_reservation_is_404(tmf, pools, number):
    answer = tmf.client.get(f"{BASE}/reservation/{number}", headers=tmf.bearer("GZ", READ))
    assert answer.status_code == 404
    assert answer.json()["code"] == "reservation_not_found"


def test_reservation_lists_are_scoped_and_filtered(tmf, pools):
    sz = tmf.client.get(f"{BASE}/reservation", headers=tmf.bearer("SZ", READ))
    assert [r["id"] for r in sz.json()] == [SZ_NUMBER]
    token = tmf.bearer("GD", READ)

    def ids(query):
        answer = tmf.client.get(f"{BASE}/reservation?{query}", headers=token)
        assert answer.status_code == 200, answer.json()
        return {r["id"] for r in answer.json()}

    assert ids("relatedParty.id=C1") == {"13800100001"}
    assert ids("relatedParty.id.ne=C1") == {SZ_NUMBER}
    assert ids(f"reservationItem.resourceCapacity.resourcePool.id={pools['sz']}") == {SZ_NUMBER}
    assert ids("reservationItem.appliedCapacityAmount.resource.id=13800100001") == {"13800100001"}
    assert ids("valid_for.gt=2026-11-25T02:00:00Z") == {"13800100001", SZ_NUMBER}
    assert ids("valid_for.lt=2026-11-25T02:00:00Z") == set()
    bad = tmf.client.get(f"{BASE}/reservation?relatedParty.id.gt=C", headers=token)
    assert bad.status_code == 400


def test_post_reserves_a_number(tmf, pools, make_uow, frozen_clock):
    token = tmf.bearer("GZ", RESERVE)
    until = (frozen_clock.now() + timedelta(minutes=10)).isoformat()
    answer = tmf.client.post(
        f"{BASE}/reservation", json=_reservation(valid_for=until), headers=token
    )
    assert answer.status_code == 201, answer.json()
    created = answer.json()
    assert answer.headers["Location"] == created["href"]
    assert created["id"] == GZ_NUMBER
    assert created["reservationState"] == "reserved"
    assert created["relatedParty"]["id"] == "C7"
    assert datetime.fromisoformat(created["valid_for"]) == datetime.fromisoformat(until)
    assert _status(make_uow, GZ_NUMBER) == ("reserved", "customer:C7")
    read = tmf.client.get(f"{BASE}/reservation/{GZ_NUMBER}", headers=token)
    assert read.json() == [created]


def test_post_without_valid_for_uses_the_operator_default(tmf, pools, frozen_clock):
    answer = tmf.client.post(
        f"{BASE}/reservation", json=_reservation(), headers=tmf.bearer("GZ", RESERVE)
    )
    until = datetime.fromisoformat(answer.json()["valid_for"])
    assert until == frozen_clock.now() + timedelta(minutes=30)


def test_a_number_held_by_someone_else_is_409(tmf, pools, make_uow):
    token = {**tmf.bearer("GZ", RESERVE), "Accept-Language": "en"}
    answer = tmf.client.post(f"{BASE}/reservation", json=_reservation("13800100001"), headers=token)
    assert answer.status_code == 409
    assert answer.json()["code"] == "reserved"
    assert _status(make_uow, "13800100001") == ("reserved", "customer:C1")
    zh = tmf.client.post(
        f"{BASE}/reservation",
        json=_reservation("13800100001"),
        headers={**token, "Accept-Language": "zh-CN"},
    )
    assert zh.json()["message"] != answer.json()["message"]
    assert zh.json()["reason"] == answer.json()["reason"]


def test_another_citys_number_cannot_be_reserved(tmf, pools, make_uow):
    answer = tmf.client.post(
        f"{BASE}/reservation", json=_reservation("13901000005"), headers=tmf.bearer("GZ", RESERVE)
    )
    assert answer.status_code == 404
    assert _status(make_uow, "13901000005") == ("free", None)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"relatedParty": None}, "invalid_field"),
        ({"relatedParty": {"id": "C7"}}, "invalid_holder"),
        ({"relatedParty": {"id": "C7", "@referredType": "Planet"}}, "invalid_holder"),
        ({"relatedParty": {"id": "C 7", "@referredType": "Customer"}}, "invalid"),
        ({"reservationItem": None}, "invalid_reservation_item"),
        ({"reservationItem": []}, "invalid_reservation_item"),
        ({"reservationItem": [{"quantity": 2}]}, "invalid_reservation_item"),
        (
            {
                "reservationItem": [
                    {
                        "appliedCapacityAmount": {
                            "resource": [{"id": "13800100004"}, {"id": "13800100005"}]
                        }
                    }
                ]
            },
            "invalid_reservation_item",
        ),
        ({"valid_for": "tomorrow"}, "invalid_field"),
        ({"valid_for": "2020-01-01T00:00:00Z"}, "invalid"),
        ({"reservationState": "cancelled"}, "invalid_state"),
        ({"channelRef": {"id": "web"}}, "unsupported_attribute"),
    ],
)
def test_bad_reservations_are_refused_and_nothing_changes(tmf, pools, engine, changes, code):
    before = count_rows(engine, PoolNumber), _status_all(engine)
    answer = tmf.client.post(
        f"{BASE}/reservation", json=_reservation(**changes), headers=tmf.bearer("GZ", RESERVE)
    )
    assert answer.status_code == 422, answer.json()
    assert answer.json()["code"] == code
    assert (count_rows(engine, PoolNumber), _status_all(engine)) == before


def test_a_malformed_number_is_refused(tmf, pools):
    answer = tmf.client.post(
        f"{BASE}/reservation", json=_reservation("12345"), headers=tmf.bearer("GZ", RESERVE)
    )
    assert answer.status_code == 422


def _status_all(engine):
    from sqlalchemy import select

    with engine.connect() as conn:
        return sorted(conn.execute(select(PoolNumber.value, PoolNumber.status)).all())


def test_patch_renews_and_cancels(tmf, pools, make_uow, frozen_clock):
    token = tmf.bearer("GZ", RESERVE)
    path = f"{BASE}/reservation/13800100001"
    until = (frozen_clock.now() + timedelta(hours=2)).isoformat()
    renewed = tmf.client.patch(path, json={"valid_for": until}, headers=token)
    assert renewed.status_code == 200, renewed.json()
    assert datetime.fromisoformat(renewed.json()["valid_for"]) == datetime.fromisoformat(until)
    assert _status(make_uow, "13800100001") == ("reserved", "customer:C1")
    same = tmf.client.patch(path, json={"reservationState": "reserved"}, headers=token)
    assert same.json() == renewed.json()
    cancelled = tmf.client.patch(path, json={"reservationState": "cancelled"}, headers=token)
    assert cancelled.status_code == 200
    assert cancelled.json()["reservationState"] == "cancelled"
    assert "valid_for" not in cancelled.json()
    assert _status(make_uow, "13800100001") == ("free", None)
    assert (
        tmf.client.patch(path, json={"reservationState": "cancelled"}, headers=token).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"relatedParty": {"id": "C2", "@referredType": "Customer"}}, 422),
        ({"reservationState": "completed"}, 422),
        ({"reservationState": "cancelled", "valid_for": "2030-01-01T00:00:00Z"}, 422),
        ({"valid_for": 5}, 422),
    ],
)
def test_bad_patches_change_nothing(tmf, pools, make_uow, body, status):
    answer = tmf.client.patch(
        f"{BASE}/reservation/13800100001", json=body, headers=tmf.bearer("GZ", RESERVE)
    )
    assert answer.status_code == status, answer.json()
    assert _status(make_uow, "13800100001") == ("reserved", "customer:C1")


def test_another_citys_reservation_cannot_be_patched(tmf, pools, make_uow):
    answer = tmf.client.patch(
        f"{BASE}/reservation/{SZ_NUMBER}",
        json={"reservationState": "cancelled"},
        headers=tmf.bearer("GZ", RESERVE),
    )
    assert answer.status_code == 404
    assert _status(make_uow, SZ_NUMBER) == ("reserved", "customer:C9")


def test_unsupported_operations_are_not_routed(tmf, pools):
    token = tmf.bearer("GZ", READ, RESERVE)
    assert tmf.client.post(f"{BASE}/resourcePool", json={}, headers=token).status_code == 405
    assert tmf.client.delete(f"{BASE}/resourcePool/{pools['gz']}", headers=token).status_code == 405
    assert tmf.client.delete(f"{BASE}/reservation/13800100001", headers=token).status_code == 405
    assert tmf.client.post(f"{BASE}/availabilityCheck", json={}, headers=token).status_code == 404


def test_a_terminal_holder_reads_as_a_session(tmf, pools, make_uow):
    kiosk = Actor(ActorKind.terminal, "T1", tmf.orgs["GZ"].path, frozenset({RESERVE, READ}))
    with make_uow(kiosk) as uow:
        numbers.reserve(uow, "13800100009", "session:K1-77")
        uow.commit()
    answer = tmf.client.get(
        f"{BASE}/reservation/13800100009", headers=tmf.bearer("GZ", READ)
    ).json()
    assert answer[0]["relatedParty"] == {
        "id": "K1-77",
        "role": "holder",
        "@referredType": "Session",
    }


def _conforms(definition, instance):
    """``instance`` is valid against the spec's ``definition`` (formats checked)."""
    raw = load_spec(SPEC)
    schema = {"$ref": f"#/definitions/{definition}", "definitions": raw["definitions"]}
    jsonschema_rs.Draft4Validator(schema, validate_formats=True).validate(instance)


def test_answers_conform_to_the_spec(tmf, pools):
    token = tmf.bearer("GD", READ, RESERVE)
    for pool in tmf.client.get(f"{BASE}/resourcePool", headers=token).json():
        _conforms("ResourcePool", pool)
    created = tmf.client.post(f"{BASE}/reservation", json=_reservation(), headers=token).json()
    _conforms("Reservation", created)
    listed = tmf.client.get(f"{BASE}/reservation", headers=token).json()
    assert len(listed) == 3
    for reservation in listed:
        _conforms("Reservation", reservation)
    [single] = tmf.client.get(f"{BASE}/reservation/{GZ_NUMBER}", headers=token).json()
    _conforms("Reservation", single)
    cancelled = tmf.client.patch(
        f"{BASE}/reservation/{GZ_NUMBER}", json={"reservationState": "cancelled"}, headers=token
    ).json()
    _conforms("Reservation", cancelled)
