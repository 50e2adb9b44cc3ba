"""TMF637 Product Inventory over HTTP: lines as products, their status and bars, VAS as
child products, organisation scoping, filters and paging."""

from __future__ import annotations

from typing import Any

import pytest

from teleserve.catalog import service as catalog_service
from teleserve.inventory import service
from tests.catalog.helpers import spec

API = "/tmf-api/productInventory/v4"
GZ, SZ = "/TS/GD/GZ/", "/TS/GD/SZ/"


def _line(number: str, org: str, customer: str, account: str, **extra: Any) -> dict[str, Any]:
    return {
        "service_number": number,
        "kind": "mobile",
        "customer_id": customer,
        "billing_account_id": account,
        "org_path": org,
        "plan_code": "P_BASIC",
        "customer_category": "individual",
        "account_type": "prepaid",
        "status": "active",
        **extra,
    }


@pytest.fixture
def lines(tmf, make_uow) -> dict[str, Any]:
    """Guangzhou: an active line with a VAS, a suspended (credit-barred) line, a pending
    and a terminated one; Shenzhen: one active line. Returns the lines by name."""
    with make_uow() as uow:
        offerings = catalog_service.create_offerings_batch(
            uow,
            [
                spec(
                    "P_BASIC",
                    name_en="Basic",
                    name_zh="基础套餐",
                    monthly_fee=3800,
                    data_rate="2.93",
                ),
                spec("VAS_CLIP", "vas", name_en="Caller ID", monthly_fee=500),
            ],
        )
        uow.commit()
    with make_uow() as uow:
        ids = service.create_subscriptions_batch(
            uow,
            [
                _line("13800000001", GZ, "C-GZ-1", "BA-GZ-1", vas_codes=["VAS_CLIP"]),
                _line("13800000002", GZ, "C-GZ-1", "BA-GZ-1"),
                _line("13800000003", "/TS/GD/GZ/GZTH/", "C-GZ-2", "BA-GZ-2", status="pending"),
                _line("13800000004", GZ, "C-GZ-2", "BA-GZ-2"),
                _line("13900000005", SZ, "C-SZ-1", "BA-SZ-1"),
            ],
        )
        service.add_bar(uow, ids[1], "credit", "arrears")
        service.terminate(uow, ids[3], "customer left")
        uow.commit()
    names = ("active", "suspended", "pending", "terminated", "shenzhen")
    with make_uow() as uow:
        found = {name: service.get_subscription(uow, i) for name, i in zip(names, ids, strict=True)}
    return {"offerings": {o.code: o for o in offerings}, **found}


def _get(tmf, path: str, org: str = "GZ", *scopes: str, **params: Any) -> Any:
    headers = tmf.bearer(org, *(scopes or ("inventory.read",)))
    return tmf.client.get(API + path, params=params, headers=headers)


def test_reads_need_a_token_and_the_scope(tmf, lines):
    one = f"/product/{lines['active'].id}"
    for path in ("/product", one):
        assert tmf.client.get(API + path).status_code == 401
        refused = _get(tmf, path, "GZ", "catalog.read")
        assert refused.status_code == 403
        assert refused.json()["@type"] == "Error"


def test_a_line_as_a_product(tmf, lines):
    line = lines["active"]
    plan, vas = lines["offerings"]["P_BASIC"], lines["offerings"]["VAS_CLIP"]
    answer = _get(tmf, f"/product/{line.id}")
    assert answer.status_code == 200
    body = answer.json()
    root = "http://testserver"
    assert body["id"] == line.id
    assert body["href"] == f"{root}{API}/product/{line.id}"
    assert body["@type"] == "Product"
    assert body["status"] == "active"
    assert body["productSerialNumber"] == "13800000001"
    assert body["name"] == "基础套餐"
    assert body["isBundle"] is True
    assert body["startDate"].endswith("+00:00")
    assert "terminationDate" not in body
    assert body["productOffering"]["id"] == plan.id
    assert body["productSpecification"]["id"] == plan.id
    assert body["relatedParty"] == [
        {
            "id": "C-GZ-1",
            "href": f"{root}/tmf-api/customerManagement/v4/customer/C-GZ-1",
            "role": "customer",
            "@referredType": "Customer",
        }
    ]
    assert body["billingAccount"]["id"] == "BA-GZ-1"
    assert body["productPrice"] == [
        {
            "priceType": "recurring",
            "price": {"taxIncludedAmount": {"unit": "CNY", "value": 38.0}},
            "productOfferingPrice": {
                "id": f"{plan.id}-recurring",
                "href": f"{root}/tmf-api/productCatalogManagement/v4/productOfferingPrice/"
                f"{plan.id}-recurring",
                "@referredType": "ProductOfferingPrice",
            },
            "recurringChargePeriod": "month",
        },
        {
            "priceType": "usage",
            "price": {"taxIncludedAmount": {"unit": "CNY", "value": 0.0293}},
            "productOfferingPrice": {
                "id": f"{plan.id}-usage-data",
                "href": f"{root}/tmf-api/productCatalogManagement/v4/productOfferingPrice/"
                f"{plan.id}-usage-data",
                "@referredType": "ProductOfferingPrice",
            },
            "unitOfMeasure": "MB",
        },
    ]
    [child] = body["product"]
    assert child["productOffering"]["id"] == vas.id
    assert child["status"] == "active"
    assert child["productPrice"][0]["price"]["taxIncludedAmount"]["value"] == 5.0
    assert {c["name"]: c["value"] for c in body["productCharacteristic"]} == {
        "lineKind": "mobile",
        "accountType": "prepaid",
    }
    # The price refs resolve in TMF620.
    catalog_headers = tmf.bearer("GZ", "catalog.read")
    price = tmf.client.get(
        body["productPrice"][1]["productOfferingPrice"]["href"], headers=catalog_headers
    )
    assert price.status_code == 200
    english = tmf.client.get(
        API + f"/product/{line.id}",
        headers={**tmf.bearer("GZ", "inventory.read"), "Accept-Language": "en"},
    )
    assert english.json()["name"] == "Basic"


def test_status_mapping_and_bars(tmf, lines):
    suspended = _get(tmf, f"/product/{lines['suspended'].id}").json()
    assert suspended["status"] == "suspended"
    bars = next(c for c in suspended["productCharacteristic"] if c["name"] == "bars")
    assert [b["bar"] for b in bars["value"]] == ["credit"]
    assert "reason" not in bars["value"][0]
    assert _get(tmf, f"/product/{lines['pending'].id}").json()["status"] == "pendingActive"
    terminated = _get(tmf, f"/product/{lines['terminated'].id}").json()
    assert terminated["status"] == "terminated"
    assert "terminationDate" in terminated


def test_another_citys_lines_are_invisible(tmf, lines):
    assert _get(tmf, f"/product/{lines['active'].id}", "SZ").status_code == 404
    assert _get(tmf, f"/product/{lines['shenzhen'].id}", "GZ").status_code == 404
    sz = _get(tmf, "/product", "SZ")
    assert [p["id"] for p in sz.json()] == [lines["shenzhen"].id]
    assert sz.headers["X-Total-Count"] == "1"
    assert _get(tmf, "/product", "GZ").headers["X-Total-Count"] == "4"
    assert _get(tmf, "/product", "GD").headers["X-Total-Count"] == "5"
    hall = _get(tmf, "/product", "GZTH")
    assert [p["id"] for p in hall.json()] == [lines["pending"].id]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"status": "active"}, ["active"]),
        ({"status": "suspended"}, ["suspended"]),
        ({"status": "active,suspended"}, ["active", "suspended"]),
        ({"status.ne": "terminated"}, ["active", "suspended", "pending"]),
        ({"status": "pendingActive"}, ["pending"]),
        ({"relatedParty.id": "C-GZ-2"}, ["pending", "terminated"]),
        ({"billingAccount.id": "BA-GZ-1"}, ["active", "suspended"]),
        ({"productSerialNumber": "13800000002"}, ["suspended"]),
        ({"serviceNumber": "+86 138-0000-0002"}, ["suspended"]),
        ({"terminationDate.gte": "2000-01-01T00:00:00Z"}, ["terminated"]),
        ({"productOffering.id": "NOPE"}, []),
    ],
)
def test_filters(tmf, lines, params, names):
    answer = _get(tmf, "/product", **params)
    assert answer.status_code == 200, answer.json()
    # Lines created in one batch share created_at: the order among them is by id.
    assert sorted(p["id"] for p in answer.json()) == sorted(lines[n].id for n in names)
    assert answer.headers["X-Total-Count"] == str(len(names))


def test_filter_by_offering_id_or_code(tmf, lines):
    plan = lines["offerings"]["P_BASIC"]
    by_id = _get(tmf, "/product", **{"productOffering.id": plan.id})
    by_code = _get(tmf, "/product", **{"productOffering.id": "P_BASIC"})
    assert by_id.headers["X-Total-Count"] == by_code.headers["X-Total-Count"] == "4"


def test_fields_and_paging(tmf, lines):
    everything = [p["id"] for p in _get(tmf, "/product").json()]
    assert sorted(everything) == sorted(
        lines[n].id for n in ("active", "suspended", "pending", "terminated")
    )
    answer = _get(tmf, "/product", fields="status", offset=1, limit=2)
    assert answer.headers["X-Total-Count"] == "4"
    assert answer.headers["X-Result-Count"] == "2"
    assert [p["id"] for p in answer.json()] == everything[1:3]
    assert all(set(p) == {"id", "href", "@type", "status"} for p in answer.json())


@pytest.mark.parametrize(
    "params",
    [{"status": "cancelled"}, {"colour": "red"}, {"startDate.gt": "soon"}, {"offset": "-1"}],
)
def test_bad_list_parameters_are_400(tmf, lines, params):
    answer = _get(tmf, "/product", **params)
    assert answer.status_code == 400
    assert answer.json()["@type"] == "Error"


def test_error_messages_follow_accept_language(tmf, lines):
    headers = tmf.bearer("GZ", "inventory.read")
    url = API + "/product?status=cancelled"
    en = tmf.client.get(url, headers={**headers, "Accept-Language": "en"}).json()
    zh = tmf.client.get(url, headers={**headers, "Accept-Language": "zh-CN"}).json()
    assert en["message"] == "status is one of pendingActive, active, suspended, terminated"
    assert zh["message"] == "status 须为 pendingActive, active, suspended, terminated 之一"


def test_writes_are_not_routed_until_the_orders_issue(tmf, lines):
    headers = tmf.bearer("GZ", "inventory.write")
    line = API + f"/product/{lines['active'].id}"
    for answer in (
        tmf.client.post(API + "/product", json={"status": "active"}, headers=headers),
        tmf.client.patch(line, json={"status": "suspended"}, headers=headers),
        tmf.client.delete(line, headers=headers),
    ):
        assert answer.status_code == 405
        assert answer.json()["@type"] == "Error"
    assert _get(tmf, f"/product/{lines['active'].id}").json()["status"] == "active"
