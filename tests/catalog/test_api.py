"""TMF620 Product Catalog Management over HTTP: every route, scopes, regions, filters,
lifecycle through PATCH, and refusals that change nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from teleserve.catalog import service
from tests.catalog.helpers import audit_actions, offerings, spec

API = "/tmf-api/productCatalogManagement/v4"
GZ = "/TS/GD/GZ/"


@pytest.fixture
def catalog(tmf, make_uow) -> dict[str, Any]:
    """A small catalog; returns the offerings by code."""
    with make_uow() as uow:
        created = service.create_offerings_batch(
            uow,
            [
                spec(
                    "P_BASIC",
                    name_en="Basic",
                    name_zh="基础套餐",
                    category="mobile",
                    monthly_fee=3800,
                    voice_minutes=100,
                    data_mb=10240,
                    data_rate="2.93",
                    valid_from=datetime(2026, 1, 1, tzinfo=UTC),
                ),
                spec("P_GZ", name_en="Guangzhou only", regions=[GZ], monthly_fee=1900),
                spec("P_DRAFT", status="draft"),
                spec(
                    "VAS_DATA",
                    "vas",
                    category="data",
                    monthly_fee=1000,
                    data_mb=10240,
                    requires_plans=["P_BASIC"],
                ),
                spec("BB_100", "broadband", monthly_fee=9900, one_time_fee=10000),
            ],
        )
        uow.commit()
    return {o.code: o for o in created}


def _get(tmf, path: str, *scopes: str, org: str = "TS", **params: Any) -> Any:
    headers = tmf.bearer(org, *(scopes or ("catalog.read",)))
    return tmf.client.get(API + path, params=params, headers=headers)


READ_ROUTES = [
    "/catalog",
    "/catalog/operator",
    "/category",
    "/category/plan",
    "/productOffering",
    "/productOffering/P_BASIC",
    "/productSpecification",
    "/productOfferingPrice",
]


@pytest.mark.parametrize("path", READ_ROUTES)
def test_every_read_needs_a_token_and_the_scope(tmf, catalog, path):
    assert tmf.client.get(API + path).status_code == 401
    refused = _get(tmf, path, "customers.read")
    assert refused.status_code == 403
    assert refused.json()["@type"] == "Error"
    assert _get(tmf, path).status_code == 200


def test_offering_list_maps_our_offerings(tmf, catalog):
    answer = _get(tmf, "/productOffering", limit=50)
    assert answer.status_code == 200
    body = answer.json()
    assert answer.headers["X-Total-Count"] == "5"
    assert answer.headers["X-Result-Count"] == "5"
    # Sorted by kind, then code.
    assert [o["code"] for o in body] == ["BB_100", "P_BASIC", "P_DRAFT", "P_GZ", "VAS_DATA"]
    basic = next(o for o in body if o["code"] == "P_BASIC")
    offering = catalog["P_BASIC"]
    assert basic["id"] == offering.id
    assert basic["href"] == f"http://testserver{API}/productOffering/{offering.id}"
    assert basic["@type"] == "ProductOffering"
    assert basic["name"] == "基础套餐"  # zh-CN is the default language
    assert basic["lifecycleStatus"] == "Active"
    assert basic["validFor"] == {"startDateTime": "2026-01-01T00:00:00+00:00"}
    assert [c["id"] for c in basic["category"]] == ["plan", "plan.mobile"]
    assert basic["productSpecification"]["id"] == offering.id
    assert [p["id"] for p in basic["productOfferingPrice"]] == [
        f"{offering.id}-recurring",
        f"{offering.id}-usage-data",
    ]
    vas = next(o for o in body if o["code"] == "VAS_DATA")
    assert vas["productOfferingRelationship"] == [
        {
            "id": offering.id,
            "href": basic["href"],
            "name": "基础套餐",
            "@referredType": "ProductOffering",
            "relationshipType": "requires",
        }
    ]
    draft = next(o for o in body if o["code"] == "P_DRAFT")
    assert draft["lifecycleStatus"] == "In design"
    # Nothing without a source: no place when sold everywhere, no validFor when open.
    assert "place" not in draft and "validFor" not in draft and "marketSegment" not in draft
    gz = next(o for o in body if o["code"] == "P_GZ")
    assert gz["place"] == [{"id": GZ, "@referredType": "OrganisationUnit"}]


@pytest.mark.parametrize(
    ("params", "codes"),
    [
        ({"lifecycleStatus": "Active"}, ["BB_100", "P_BASIC", "P_GZ", "VAS_DATA"]),
        ({"lifecycleStatus": "In design"}, ["P_DRAFT"]),
        ({"lifecycleStatus.ne": "Active"}, ["P_DRAFT"]),
        ({"category.id": "vas"}, ["VAS_DATA"]),
        ({"category.id": "plan.mobile"}, ["P_BASIC"]),
        ({"category.id": "plan,broadband"}, ["BB_100", "P_BASIC", "P_DRAFT", "P_GZ"]),
        ({"category.id.ne": "plan"}, ["BB_100", "VAS_DATA"]),
        ({"name": "基础套餐"}, ["P_BASIC"]),
        ({"validFor.startDateTime.gte": "2025-12-31T00:00:00Z"}, ["P_BASIC"]),
        ({"lastUpdate.lt": "2000-01-01T00:00:00Z"}, []),
        ({"code": "p_gz"}, ["P_GZ"]),
    ],
)
def test_offering_filters(tmf, catalog, params, codes):
    answer = _get(tmf, "/productOffering", **params)
    assert answer.status_code == 200, answer.json()
    assert [o["code"] for o in answer.json()] == codes
    assert answer.headers["X-Total-Count"] == str(len(codes))


def test_names_are_shown_and_matched_in_the_request_language(tmf, catalog):
    headers = {**tmf.bearer("TS", "catalog.read"), "Accept-Language": "en"}
    answer = tmf.client.get(API + "/productOffering", params={"name": "Basic"}, headers=headers)
    assert [o["name"] for o in answer.json()] == ["Basic"]


def test_fields_and_paging(tmf, catalog):
    answer = _get(tmf, "/productOffering", fields="name,lifecycleStatus", offset=1, limit=2)
    assert answer.headers["X-Total-Count"] == "5"
    assert answer.headers["X-Result-Count"] == "2"
    assert [set(o) for o in answer.json()] == [
        {"id", "href", "@type", "name", "lifecycleStatus"}
    ] * 2
    single = _get(tmf, "/productOffering/P_BASIC", fields="code")
    assert set(single.json()) == {"id", "href", "@type", "code"}


@pytest.mark.parametrize(
    "params",
    [
        {"colour": "red"},
        {"lifecycleStatus": "Launched"},
        {"lastUpdate.gt": "yesterday"},
        {"name.gt": "a"},
        {"limit": "x"},
    ],
)
def test_bad_list_parameters_are_400(tmf, catalog, params):
    answer = _get(tmf, "/productOffering", **params)
    assert answer.status_code == 400
    assert answer.json()["@type"] == "Error"


def test_regional_clients_see_what_is_sold_in_their_region(tmf, catalog):
    gz_only = catalog["P_GZ"].id
    sz = _get(tmf, "/productOffering", org="SZ", limit=50)
    assert "P_GZ" not in [o["code"] for o in sz.json()]
    assert sz.headers["X-Total-Count"] == "4"
    assert _get(tmf, f"/productOffering/{gz_only}", org="SZ").status_code == 404
    assert _get(tmf, f"/productSpecification/{gz_only}", org="SZ").status_code == 404
    assert _get(tmf, f"/productOfferingPrice/{gz_only}-recurring", org="SZ").status_code == 404
    sz_prices = _get(tmf, "/productOfferingPrice", org="SZ", limit=50).json()
    assert not [p for p in sz_prices if p["id"].startswith(gz_only)]
    # A hall under Guangzhou and the province above it both see it.
    for org in ("GZTH", "GD", "GZ"):
        assert _get(tmf, f"/productOffering/{gz_only}", org=org).status_code == 200, org
        assert _get(tmf, "/productOffering", org=org).headers["X-Total-Count"] == "5"


def test_specification_is_derived_from_the_offering(tmf, catalog):
    offering = catalog["P_BASIC"]
    answer = _get(tmf, f"/productSpecification/{offering.id}")
    assert answer.status_code == 200
    body = answer.json()
    assert body["@type"] == "ProductSpecification"
    assert body["productNumber"] == "P_BASIC"
    characteristics = {
        c["name"]: c["productSpecCharacteristicValue"] for c in body["productSpecCharacteristic"]
    }
    assert characteristics == {
        "offeringKind": [{"value": "plan", "isDefault": True}],
        "monthlyVoiceMinutes": [{"value": 100, "unitOfMeasure": "min", "isDefault": True}],
        "monthlyDataMB": [{"value": 10240, "unitOfMeasure": "MB", "isDefault": True}],
    }
    listed = _get(tmf, "/productSpecification", productNumber="P_BASIC")
    assert [s["id"] for s in listed.json()] == [offering.id]
    assert listed.headers["X-Total-Count"] == "1"


def test_prices_are_derived_from_the_offering(tmf, catalog):
    basic, broadband = catalog["P_BASIC"], catalog["BB_100"]
    monthly = _get(tmf, f"/productOfferingPrice/{basic.id}-recurring").json()
    assert monthly["priceType"] == "recurring"
    assert monthly["price"] == {"unit": "CNY", "value": 38.0}
    assert monthly["recurringChargePeriodType"] == "month"
    assert monthly["recurringChargePeriodLength"] == 1
    data = _get(tmf, f"/productOfferingPrice/{basic.id}-usage-data").json()
    assert data["priceType"] == "usage"
    assert data["price"] == {"unit": "CNY", "value": 0.0293}  # 2.93 fen per MB
    assert data["unitOfMeasure"] == {"amount": 1, "units": "MB"}
    install = _get(tmf, f"/productOfferingPrice/{broadband.id}-oneTime").json()
    assert install["price"] == {"unit": "CNY", "value": 100.0}
    # No one-time fee on the plan: no such price.
    assert _get(tmf, f"/productOfferingPrice/{basic.id}-oneTime").status_code == 404
    assert _get(tmf, "/productOfferingPrice/nonsense").status_code == 404
    one_time = _get(tmf, "/productOfferingPrice", priceType="oneTime")
    assert [p["id"] for p in one_time.json()] == [f"{broadband.id}-oneTime"]
    usage = _get(tmf, "/productOfferingPrice", priceType="usage", lifecycleStatus="Active")
    assert usage.headers["X-Total-Count"] == "1"
    page = _get(tmf, "/productOfferingPrice", offset=1, limit=2)
    assert page.headers["X-Total-Count"] == "7"  # 5 monthly + 1 one-time + 1 usage
    assert page.headers["X-Result-Count"] == "2"


def test_categories_are_kinds_and_their_subcategories(tmf, catalog):
    answer = _get(tmf, "/category", limit=50)
    ids = [c["id"] for c in answer.json()]
    assert ids == ["plan", "plan.mobile", "vas", "vas.data", "broadband", "fixed_line"]
    plan = answer.json()[0]
    assert plan["isRoot"] is True
    assert plan["subCategory"][0]["id"] == "plan.mobile"
    assert "lastUpdate" in plan
    fixed = answer.json()[-1]
    assert "lastUpdate" not in fixed  # no fixed-line offering: no date to give
    roots = _get(tmf, "/category", isRoot="true")
    assert roots.headers["X-Total-Count"] == "4"
    subs = _get(tmf, "/category", parentId="vas")
    assert [c["id"] for c in subs.json()] == ["vas.data"]
    english = tmf.client.get(
        API + "/category/vas",
        headers={**tmf.bearer("TS", "catalog.read"), "Accept-Language": "en"},
    )
    assert english.json()["name"] == "Value-added services"
    assert _get(tmf, "/category/vas.data").json()["parentId"] == "vas"
    assert _get(tmf, "/category/nothing").status_code == 404
    assert _get(tmf, "/category", isRoot="maybe").status_code == 400


def test_the_operator_catalog(tmf, catalog):
    listed = _get(tmf, "/catalog")
    assert listed.headers["X-Total-Count"] == "1"
    body = _get(tmf, "/catalog/operator").json()
    assert body["@type"] == "Catalog"
    assert [c["id"] for c in body["category"]] == ["plan", "vas", "broadband", "fixed_line"]
    assert _get(tmf, "/catalog/other").status_code == 404


# -- writes ------------------------------------------------------------------------------


def _new_offering(**overrides: Any) -> dict[str, Any]:
    return {
        "code": "P_NEW",
        "nameZh": "新套餐",
        "nameEn": "New plan",
        "description": "每月200分钟",
        "category": [{"id": "plan"}, {"id": "plan.5g"}],
        "validFor": {"startDateTime": "2026-12-01T00:00:00+08:00"},
        "productOfferingPrice": [
            {
                "priceType": "recurring",
                "price": {"taxIncludedAmount": {"unit": "CNY", "value": 58}},
            },
            {
                "priceType": "usage",
                "unitOfMeasure": {"amount": 1, "units": "MB"},
                "price": {"taxIncludedAmount": {"unit": "CNY", "value": 0.0293}},
            },
        ],
        "prodSpecCharValueUse": [
            {"name": "monthlyVoiceMinutes", "productSpecCharacteristicValue": [{"value": 200}]}
        ],
        "marketSegment": [{"id": "individual"}],
        "place": [{"id": GZ}],
        "@type": "ProductOffering",
        **overrides,
    }


def _writer(tmf, org: str = "TS") -> dict[str, str]:
    return tmf.bearer(org, "catalog.write")


def test_create_an_offering(tmf, catalog, make_uow):
    headers = _writer(tmf)
    answer = tmf.client.post(API + "/productOffering", json=_new_offering(), headers=headers)
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert answer.headers["Location"] == body["href"]
    assert body["code"] == "P_NEW"
    assert body["lifecycleStatus"] == "In design"
    assert body["description"] == "每月200分钟"
    with make_uow() as uow:
        created = service.get_offering(uow, body["id"])
    assert created.name_en == "New plan" and created.name_zh == "新套餐"
    assert created.category == "5g"
    assert created.monthly_fee == 5800
    assert str(created.data_rate) == "2.93"
    assert created.voice_minutes == 200
    assert created.customer_categories == ("individual",)
    assert created.regions == (GZ,)
    assert created.valid_from == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert "catalog.offering.created" in audit_actions(tmf.client.app.state.engine, body["id"])
    fetched = tmf.client.get(API + f"/productOffering/{body['id']}", headers=headers)
    assert fetched.json() == body


def test_lifecycle_through_patch(tmf, catalog, make_uow):
    headers = _writer(tmf)
    created = tmf.client.post(API + "/productOffering", json=_new_offering(), headers=headers)
    path = API + f"/productOffering/{created.json()['id']}"
    # A draft may change its prices, in the same request that activates it.
    prices = [{"priceType": "recurring", "price": {"taxIncludedAmount": {"value": 68}}}]
    answer = tmf.client.patch(
        path,
        json={"lifecycleStatus": "Active", "productOfferingPrice": prices, "name": "新套餐二"},
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    )
    assert answer.status_code == 200, answer.json()
    assert answer.json()["lifecycleStatus"] == "Active"
    assert answer.json()["name"] == "新套餐二"
    with make_uow() as uow:
        offering = service.get_offering(uow, "P_NEW")
    assert (offering.monthly_fee, offering.data_rate) == (6800, 0)
    # An active offering keeps its prices: 409, nothing changed.
    refused = tmf.client.patch(
        path,
        json={"productOfferingPrice": [], "name": "改名"},
        headers={**headers, "Accept-Language": "en"},
    )
    assert refused.status_code == 409
    assert "prices and allowances of an active offering" in refused.json()["message"]
    with make_uow() as uow:
        assert service.get_offering(uow, "P_NEW").name_zh == "新套餐二"
    back = tmf.client.patch(path, json={"lifecycleStatus": "In design"}, headers=headers)
    assert back.status_code == 409
    retired = tmf.client.patch(
        path, json={"lifecycleStatus": "Retired", "statusReason": "replaced"}, headers=headers
    )
    assert retired.status_code == 200
    assert retired.json()["lifecycleStatus"] == "Retired"
    actions = audit_actions(tmf.client.app.state.engine, created.json()["id"])
    assert actions[-2:] == ["catalog.offering.activated", "catalog.offering.retired"]
    # Patching to the status it already has changes nothing and is not an error.
    again = tmf.client.patch(path, json={"lifecycleStatus": "Retired"}, headers=headers)
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (_new_offering(id="x"), 422),
        (_new_offering(lastUpdate="2026-01-01T00:00:00Z"), 422),
        (_new_offering(isBundle=True), 422),
        (_new_offering(category=[{"id": "phone"}]), 422),
        (_new_offering(category=[{"id": "plan"}, {"id": "vas"}]), 422),
        ({k: v for k, v in _new_offering().items() if k != "category"}, 422),
        (
            _new_offering(
                productOfferingPrice=[
                    {"priceType": "recurring", "price": {"taxIncludedAmount": {"value": 1.234}}}
                ]
            ),
            422,
        ),
        (
            _new_offering(
                productOfferingPrice=[
                    {"priceType": "recurring", "price": {"dutyFreeAmount": {"value": 1}}}
                ]
            ),
            422,
        ),
        (_new_offering(marketSegment=[{"id": "students"}]), 422),
        (_new_offering(validFor={"startDateTime": "soon"}), 422),
        (_new_offering(code="bad code!"), 422),
        (_new_offering(code="P_BASIC"), 409),
        (
            _new_offering(
                productOfferingRelationship=[{"id": "NOPE", "relationshipType": "requires"}]
            ),
            422,
        ),
        (_new_offering(statusReason="why"), 422),
    ],
)
def test_bad_offerings_are_refused_and_nothing_is_written(tmf, catalog, body, status):
    before = offerings(tmf.client.app.state.engine)
    answer = tmf.client.post(API + "/productOffering", json=body, headers=_writer(tmf))
    assert answer.status_code == status, answer.json()
    assert answer.json()["@type"] == "Error"
    assert offerings(tmf.client.app.state.engine) == before


def test_body_must_be_a_json_object(tmf, catalog):
    headers = {**_writer(tmf), "Content-Type": "application/json"}
    for raw in (b"[1]", b"{", b""):
        answer = tmf.client.post(API + "/productOffering", content=raw, headers=headers)
        assert answer.status_code == 400


def test_writing_needs_catalog_write_and_authority_over_the_regions(tmf, catalog):
    before = offerings(tmf.client.app.state.engine)
    url = API + "/productOffering"
    assert tmf.client.post(url, json=_new_offering()).status_code == 401
    reader = tmf.bearer("TS", "catalog.read")
    assert tmf.client.post(url, json=_new_offering(), headers=reader).status_code == 403
    patch = API + f"/productOffering/{catalog['P_DRAFT'].id}"
    assert tmf.client.patch(patch, json={"name": "x"}, headers=reader).status_code == 403
    # A writer below the root manages only offerings sold exclusively in its subtree.
    sz = _writer(tmf, "SZ")
    assert tmf.client.post(url, json=_new_offering(), headers=sz).status_code == 403
    assert offerings(tmf.client.app.state.engine) == before
    mine = tmf.client.post(url, json=_new_offering(place=[{"id": "/TS/GD/SZ/"}]), headers=sz)
    assert mine.status_code == 201


def test_unroutable_operations_answer_tmf_errors(tmf, catalog):
    headers = _writer(tmf)
    offering = catalog["P_DRAFT"].id
    deleted = tmf.client.delete(API + f"/productOffering/{offering}", headers=headers)
    assert deleted.status_code == 405
    assert deleted.json()["@type"] == "Error"
    assert tmf.client.post(API + "/category", json={}, headers=headers).status_code == 405
    assert tmf.client.get(API + "/importJob", headers=headers).status_code == 404


def test_error_messages_follow_accept_language(tmf, catalog):
    headers = _writer(tmf)
    body = _new_offering(colour="red")
    zh = tmf.client.post(API + "/productOffering", json=body, headers=headers).json()
    en = tmf.client.post(
        API + "/productOffering", json=body, headers={**headers, "Accept-Language": "en"}
    ).json()
    assert en["message"] == "The attribute colour cannot be set through this API"
    assert zh["message"] == "属性 colour 不能通过此接口设置"
    assert zh["reason"] == en["message"]
