"""TMF632 individual / organization, TMF629 customer, TMF666 billingAccount over HTTP:
authentication, scopes, organisation scoping, filters, paging, merge PATCH, masking,
bad input, and the shapes the specifications define."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from sqlalchemy import select

from teleserve.core.actor import SYSTEM
from teleserve.core.audit import AuditRecord
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service
from teleserve.customers.validation import credit_code_check_character
from tests.customers.conftest import make_id

PARTY = "/tmf-api/party/v4"
CUSTOMER = "/tmf-api/customerManagement/v4"
ACCOUNT = "/tmf-api/accountManagement/v4"
SPECS = Path("/work/shared/tmf")
if not SPECS.exists():  # a clone next to the shared directory
    SPECS = Path(__file__).resolve().parents[3] / "shared" / "tmf"


def credit_code(seq: int) -> str:
    first17 = f"91440101MA{seq:07d}"
    return first17 + credit_code_check_character(first17)


def person(seq: int, name: str = "张三", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "@type": "Individual",
        "familyName": name[0],
        "givenName": name[1:],
        "individualIdentification": [
            {"identificationType": "resident_id", "identificationId": make_id(seq=f"{seq:03d}")}
        ],
        "contactMedium": [
            {"mediumType": "mobile", "characteristic": {"phoneNumber": f"138001{seq:05d}"}},
            {"mediumType": "email", "characteristic": {"emailAddress": f"p{seq}@example.com"}},
        ],
    }
    body.update(extra)
    return body


def schema_errors(definition: str, spec: str, resource: Any) -> list[str]:
    """Where ``resource`` breaks the spec's definition (Swagger 2.0 schemas are JSON
    Schema draft 4)."""
    document = json.loads((SPECS / f"{spec}.swagger.json").read_text())
    schema = {"$ref": f"#/definitions/{definition}", "definitions": document["definitions"]}
    validator = jsonschema_rs.Draft4Validator(schema)
    return [str(error) for error in validator.iter_errors(resource)]


@pytest.fixture
def api(tmf: Any) -> Any:
    tmf.gz_write = tmf.bearer("GZ", "customers.write")
    tmf.gz_read = tmf.bearer("GZ", "customers.read")
    tmf.sz_read = tmf.bearer("SZ", "customers.read")
    return tmf


def post(api: Any, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return api.client.post(path, json=body, headers=headers or api.gz_write)


def register_in(
    make_uow: Callable[..., UnitOfWork], api: Any, org: str, seq: int, name: str = "李四"
) -> str:
    """A person registered by the service directly under ``org`` (another city's data)."""
    unit = api.orgs[org]
    with make_uow(SYSTEM) as uow:
        detail = service.register_individual(
            uow,
            name=name,
            id_number=make_id(seq=f"{seq:03d}"),
            org_unit_id=unit.id,
            org_path=unit.path,
            mobile=f"139001{seq:05d}",
        )
        uow.commit()
    return detail.id


# -- authentication, scopes, scoping ---------------------------------------------------

ROUTES = [
    ("get", f"{PARTY}/individual"),
    ("get", f"{PARTY}/individual/x"),
    ("post", f"{PARTY}/individual"),
    ("patch", f"{PARTY}/individual/x"),
    ("get", f"{PARTY}/organization"),
    ("get", f"{PARTY}/organization/x"),
    ("post", f"{PARTY}/organization"),
    ("patch", f"{PARTY}/organization/x"),
    ("get", f"{CUSTOMER}/customer"),
    ("get", f"{CUSTOMER}/customer/x"),
    ("post", f"{CUSTOMER}/customer"),
    ("patch", f"{CUSTOMER}/customer/x"),
    ("get", f"{ACCOUNT}/billingAccount"),
    ("get", f"{ACCOUNT}/billingAccount/x"),
    ("post", f"{ACCOUNT}/billingAccount"),
    ("patch", f"{ACCOUNT}/billingAccount/x"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_bearer_token(tmf, method, path):
    kwargs = {"json": {}} if method != "get" else {}
    answer = getattr(tmf.client, method)(path, **kwargs)
    assert answer.status_code == 401
    assert answer.json()["@type"] == "Error"
    assert answer.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_token_without_the_scope_is_403(tmf, method, path):
    headers = tmf.bearer("GZ", "catalog.read")
    kwargs = {"json": {}} if method != "get" else {}
    answer = getattr(tmf.client, method)(path, headers=headers, **kwargs)
    assert answer.status_code == 403
    assert answer.json()["code"] == "forbidden"


def test_read_scope_cannot_write(api):
    answer = post(api, f"{PARTY}/individual", person(1), api.gz_read)
    assert answer.status_code == 403
    listed = api.client.get(f"{PARTY}/individual", headers=api.gz_read)
    assert listed.headers["X-Total-Count"] == "0"


def test_another_citys_records_are_404_and_not_counted(api, make_uow):
    created = post(api, f"{PARTY}/individual", person(1)).json()
    customers = api.client.get(f"{CUSTOMER}/customer", headers=api.gz_read).json()
    (customer,) = customers
    account = post(
        api,
        f"{ACCOUNT}/billingAccount",
        {"name": "x", "relatedParty": [{"id": customer["id"], "@referredType": "Customer"}]},
    ).json()
    register_in(make_uow, api, "SZ", 2)
    for path in (
        f"{PARTY}/individual/{created['id']}",
        f"{CUSTOMER}/customer/{customer['id']}",
        f"{ACCOUNT}/billingAccount/{account['id']}",
    ):
        assert api.client.get(path, headers=api.sz_read).status_code == 404
        assert api.client.get(path, headers=api.gz_read).status_code == 200
    for path in (f"{PARTY}/individual", f"{CUSTOMER}/customer"):
        sz = api.client.get(path, headers=api.sz_read)
        assert sz.headers["X-Total-Count"] == "1"
        assert created["id"] not in sz.text
        gz = api.client.get(path, headers=api.gz_read)
        assert gz.headers["X-Total-Count"] == "1"
    assert api.client.get(f"{ACCOUNT}/billingAccount", headers=api.sz_read).json() == []
    # Another city's customer cannot get an account, nor its party be patched.
    sz_write = api.bearer("SZ", "customers.write")
    refused = post(
        api,
        f"{ACCOUNT}/billingAccount",
        {"name": "x", "relatedParty": [{"id": customer["id"], "@referredType": "Customer"}]},
        sz_write,
    )
    assert refused.status_code == 404
    patched = api.client.patch(
        f"{PARTY}/individual/{created['id']}", json={"contactMedium": []}, headers=sz_write
    )
    assert patched.status_code == 404


# -- individuals and organisations -----------------------------------------------------


def test_post_individual_registers_a_masked_person(api):
    body = person(7, "欧阳娜娜")
    answer = post(api, f"{PARTY}/individual", body)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert answer.headers["Location"] == created["href"]
    assert created["href"].endswith(f"{PARTY}/individual/{created['id']}")
    assert created["@type"] == "Individual"
    assert created["fullName"] == "欧阳**"
    assert created["gender"] == "male"
    (document,) = created["individualIdentification"]
    full_number = body["individualIdentification"][0]["identificationId"]
    assert document == {
        "identificationType": "resident_id",
        "identificationId": full_number[:6] + "********" + full_number[-4:],
    }
    assert [m["characteristic"] for m in created["contactMedium"]] == [
        {"contactType": "mobile", "phoneNumber": "138****0007"},
        {"contactType": "email", "emailAddress": "p***@example.com"},
    ]
    # Never the full ID number, name or mobile; the birth date (in the number) is left out.
    assert full_number not in answer.text and "娜娜" not in answer.text
    assert "13800100007" not in answer.text and "birthDate" not in created
    assert schema_errors("Individual", "TMF632", created) == []
    again = api.client.get(created["href"], headers=api.gz_read)
    assert again.json() == created
    # A customer came with it, engaging this party.
    (customer,) = api.client.get(
        f"{CUSTOMER}/customer", params={"engagedParty.id": created["id"]}, headers=api.gz_read
    ).json()
    assert customer["engagedParty"]["@referredType"] == "Individual"
    assert customer["engagedParty"]["href"] == created["href"]


def test_post_organization(api):
    code = credit_code(1)
    answer = post(
        api,
        f"{PARTY}/organization",
        {
            "tradingName": "广州某某科技有限公司",
            "organizationIdentification": [
                {"identificationType": "unifiedSocialCreditCode", "identificationId": code}
            ],
            "contactMedium": [
                {"mediumType": "postalAddress", "characteristic": {"street1": "天河路1号"}}
            ],
        },
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["name"] == "广州某某科技有限公司"  # public: not masked
    assert created["organizationIdentification"][0]["identificationId"] == code
    assert created["contactMedium"][0]["characteristic"]["street1"] == "天河路1号"
    assert schema_errors("Organization", "TMF632", created) == []
    listed = api.client.get(
        f"{PARTY}/organization",
        params={"organizationIdentification.identificationId": code.lower()},
        headers=api.gz_read,
    )
    assert [o["id"] for o in listed.json()] == [created["id"]]
    assert api.client.get(f"{PARTY}/individual", headers=api.gz_read).json() == []
    # The same code again: a conflict, nothing new.
    again = post(
        api,
        f"{PARTY}/organization",
        {"name": "另一个", "organizationIdentification": [{"identificationId": code}]},
    )
    assert again.status_code == 409
    total = api.client.get(f"{PARTY}/organization", headers=api.gz_read).headers["X-Total-Count"]
    assert total == "1"


def test_individual_filters_and_fields(api):
    for seq, name in ((1, "张三"), (2, "张四"), (3, "王五")):
        assert post(api, f"{PARTY}/individual", person(seq, name)).status_code == 201
    get = api.client.get
    by_name = get(f"{PARTY}/individual", params={"fullName": "张"}, headers=api.gz_read)
    assert by_name.headers["X-Total-Count"] == "2"
    by_id = get(f"{PARTY}/individual", params={"idNumber": make_id(seq="003")}, headers=api.gz_read)
    assert [p["fullName"] for p in by_id.json()] == ["王*"]
    assert make_id(seq="003") not in by_id.text
    projected = get(
        f"{PARTY}/individual", params={"fields": "fullName", "limit": 1}, headers=api.gz_read
    )
    assert projected.headers["X-Total-Count"] == "3"
    assert projected.headers["X-Result-Count"] == "1"
    assert set(projected.json()[0]) == {"id", "href", "@type", "fullName"}


# -- customers -------------------------------------------------------------------------


def test_post_customer_registers_party_and_customer(api):
    answer = post(
        api,
        f"{CUSTOMER}/customer",
        {
            "name": "王小明",
            "engagedParty": {
                "@referredType": "Individual",
                "individualIdentification": [{"identificationId": make_id(seq="011")}],
            },
            "contactMedium": [
                {"mediumType": "mobile", "characteristic": {"phoneNumber": "13800138011"}}
            ],
        },
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert answer.headers["Location"] == created["href"]
    assert created["name"] == "王**"
    assert created["status"] == "active"
    assert created["characteristic"][0]["name"] == "customerNumber"
    assert created["validFor"]["startDateTime"].endswith("Z")
    assert schema_errors("Customer", "TMF629", created) == []
    party = api.client.get(created["engagedParty"]["href"], headers=api.gz_read)
    assert party.status_code == 200 and party.json()["fullName"] == "王**"
    # Referring to that party again: it already is a customer.
    again = post(
        api,
        f"{CUSTOMER}/customer",
        {
            "name": "x",
            "engagedParty": {"id": party.json()["id"], "@referredType": "Individual"},
        },
    )
    assert again.status_code == 409
    assert created["id"] in again.json()["message"]
    unknown = post(
        api,
        f"{CUSTOMER}/customer",
        {"name": "x", "engagedParty": {"id": "nope", "@referredType": "Organization"}},
    )
    assert unknown.status_code == 404


def test_customer_filters_paging_and_fields(api, make_uow):
    ids = []
    for seq, name in ((1, "张三"), (2, "张四"), (3, "王五")):
        created = post(api, f"{PARTY}/individual", person(seq, name)).json()
        ids.append(created["id"])
    post(
        api,
        f"{PARTY}/organization",
        {
            "name": "张氏贸易有限公司",
            "organizationIdentification": [{"identificationId": credit_code(2)}],
        },
    )
    register_in(make_uow, api, "GZTH", 4, "张六")  # a hall under GZ: visible to GZ
    register_in(make_uow, api, "SZ", 5, "张七")  # another city: never
    get = api.client.get
    path = f"{CUSTOMER}/customer"

    def total(**params: Any) -> int:
        answer = get(path, params=params, headers=api.gz_read)
        assert answer.status_code == 200, answer.text
        return int(answer.headers["X-Total-Count"])

    assert total() == 5
    assert total(name="张") == 4
    assert total(**{"engagedParty.@referredType": "Organization"}) == 1
    assert total(**{"engagedParty.@referredType": "Individual", "name": "张"}) == 3
    assert total(status="active") == 5
    assert total(status="closed") == 0
    assert total(serviceNumber="13800100002") == 1  # the contact mobile
    assert total(serviceNumber="13900100004") == 1  # the hall's customer
    assert total(serviceNumber="13900100005") == 0  # Shenzhen's
    assert total(idNumber=make_id(seq="003")) == 1
    assert total(idNumber=make_id(seq="005")) == 0
    assert total(**{"engagedParty.id": f"{ids[0]},{ids[1]}"}) == 2
    assert total(**{"validFor.startDateTime.gte": "2000-01-01T00:00:00Z"}) == 5
    assert total(**{"validFor.startDateTime.lt": "2000-01-01T00:00:00+08:00"}) == 0
    first = get(path, params={"limit": 2}, headers=api.gz_read)
    rest = get(path, params={"offset": 2, "limit": 10}, headers=api.gz_read)
    assert first.headers["X-Result-Count"] == "2" and rest.headers["X-Result-Count"] == "3"
    everyone = [c["id"] for c in first.json() + rest.json()]
    assert len(set(everyone)) == 5  # a stable order: no row twice, none missing
    number = first.json()[0]["characteristic"][0]["value"]
    assert total(customerNumber=number) == 1
    projected = get(path, params={"fields": "status,engagedParty"}, headers=api.gz_read).json()
    assert set(projected[0]) == {"id", "href", "@type", "status", "engagedParty"}
    for customer in get(path, headers=api.gz_read).json():
        assert schema_errors("Customer", "TMF629", customer) == []


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"colour": "red"}, "unsupported_filter"),
        ({"name.gt": "a"}, "unsupported_filter"),
        ({"status.gt": "a"}, "unsupported_filter"),
        ({"validFor.startDateTime": "yesterday"}, "invalid_filter"),
        ({"serviceNumber": "!"}, "invalid_filter"),
        ({"limit": "x"}, "bad_request"),
        ({"offset": "-1"}, "invalid_offset"),
    ],
)
def test_bad_list_parameters_are_400(api, params, code):
    answer = api.client.get(f"{CUSTOMER}/customer", params=params, headers=api.gz_read)
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == code
    assert body["@type"] == "Error"


def test_a_refused_filter_is_named_as_the_client_wrote_it(api):
    answer = api.client.get(
        f"{CUSTOMER}/customer", params={"idNumber.ne": "1"}, headers=api.gz_read
    )
    assert answer.status_code == 400
    assert "idNumber" in answer.json()["message"]


def test_patch_contact_media(api):
    created = post(api, f"{PARTY}/individual", person(1)).json()
    media = created["contactMedium"]
    # Send back what GET gave, the mobile still masked, the e-mail changed.
    media[1]["characteristic"]["emailAddress"] = "new@example.com"
    answer = api.client.patch(
        created["href"],
        json={**created, "contactMedium": media},
        headers={**api.gz_write, "Content-Type": "application/merge-patch+json"},
    )
    assert answer.status_code == 200, answer.text
    patched = answer.json()
    assert [m["characteristic"] for m in patched["contactMedium"]] == [
        {"contactType": "mobile", "phoneNumber": "138****0001"},
        {"contactType": "email", "emailAddress": "n***@example.com"},
    ]
    # The stored mobile was kept, not replaced by its mask.
    found = api.client.get(
        f"{CUSTOMER}/customer", params={"serviceNumber": "13800100001"}, headers=api.gz_read
    )
    assert found.headers["X-Total-Count"] == "1"
    customer = found.json()[0]
    # The customer resource shows the same media; PATCH there too (remove all).
    assert customer["contactMedium"] == patched["contactMedium"]
    cleared = api.client.patch(customer["href"], json={"contactMedium": None}, headers=api.gz_write)
    assert cleared.status_code == 200 and cleared.json()["contactMedium"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"fullName": "李四"},
        {"gender": "female"},
        {"contactMedium": [{"mediumType": "fax", "characteristic": {"faxNumber": "1"}}]},
        {"contactMedium": [{"mediumType": "mobile", "characteristic": {"phoneNumber": "123"}}]},
        {"contactMedium": "13800138000"},
    ],
)
def test_patch_refuses_what_it_cannot_change_and_changes_nothing(api, body):
    created = post(api, f"{PARTY}/individual", person(1)).json()
    answer = api.client.patch(created["href"], json=body, headers=api.gz_write)
    assert answer.status_code == 422
    assert api.client.get(created["href"], headers=api.gz_read).json() == created


# -- billing accounts ------------------------------------------------------------------


def test_billing_accounts(api):
    party = post(api, f"{PARTY}/individual", person(1)).json()
    (customer,) = api.client.get(
        f"{CUSTOMER}/customer", params={"engagedParty.id": party["id"]}, headers=api.gz_read
    ).json()
    owner = [{"id": customer["id"], "@referredType": "Customer", "name": customer["name"]}]
    prepaid = post(api, f"{ACCOUNT}/billingAccount", {"name": "mine", "relatedParty": owner})
    assert prepaid.status_code == 201, prepaid.text
    postpaid = post(
        api,
        f"{ACCOUNT}/billingAccount",
        {
            "name": "mine",
            "relatedParty": owner,
            "accountType": "postpaid",
            "creditLimit": {"unit": "CNY", "value": 100.5},
            "billStructure": {
                "cycleSpecification": {"name": "x", "isRef": False, "billingDateShift": 9}
            },
        },
    )
    assert postpaid.status_code == 201, postpaid.text
    created = postpaid.json()
    assert postpaid.headers["Location"] == created["href"]
    assert created["name"].startswith("BA")  # the account number, not the name sent
    assert created["creditLimit"] == {"unit": "CNY", "value": 100.5}
    assert created["billStructure"]["cycleSpecification"]["billingDateShift"] == 9
    assert created["relatedParty"][0]["id"] == customer["id"]
    assert created["relatedParty"][0]["name"] == "张*"
    assert "creditLimit" not in prepaid.json()
    for resource in (prepaid.json(), created):
        assert schema_errors("BillingAccount", "TMF666", resource) == []
    get = api.client.get
    listed = get(
        f"{ACCOUNT}/billingAccount", params={"relatedParty.id": customer["id"]}, headers=api.gz_read
    )
    assert listed.headers["X-Total-Count"] == "2"
    assert get(
        f"{ACCOUNT}/billingAccount", params={"accountType": "postpaid"}, headers=api.gz_read
    ).json() == [created]
    assert (
        get(f"{ACCOUNT}/billingAccount", params={"state": "closed"}, headers=api.gz_read).headers[
            "X-Total-Count"
        ]
        == "0"
    )
    by_name = get(
        f"{ACCOUNT}/billingAccount", params={"name": created["name"]}, headers=api.gz_read
    )
    assert [a["id"] for a in by_name.json()] == [created["id"]]
    # The customer lists its accounts.
    again = get(customer["href"], headers=api.gz_read).json()
    assert {a["id"] for a in again["account"]} == {created["id"], prepaid.json()["id"]}

    patched = api.client.patch(
        created["href"], json={"creditLimit": {"unit": "CNY", "value": 200}}, headers=api.gz_write
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["creditLimit"] == {"unit": "CNY", "value": 200.0}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"state": "closed"}, 422),
        ({"creditLimit": {"unit": "CNY", "value": 1.234}}, 422),
        ({"creditLimit": {"unit": "USD", "value": 1}}, 422),
        ({"accountType": "prepaid"}, 422),
        ({"name": "renamed"}, 422),
    ],
)
def test_billing_account_patch_refusals_change_nothing(api, body, status):
    post(api, f"{PARTY}/individual", person(1))
    (customer,) = api.client.get(f"{CUSTOMER}/customer", headers=api.gz_read).json()
    owner = [{"id": customer["id"], "@referredType": "Customer", "name": "x"}]
    created = post(
        api,
        f"{ACCOUNT}/billingAccount",
        {
            "name": "n",
            "relatedParty": owner,
            "accountType": "postpaid",
            "creditLimit": {"unit": "CNY", "value": 50},
        },
    ).json()
    answer = api.client.patch(created["href"], json=body, headers=api.gz_write)
    assert answer.status_code == status
    assert answer.json()["@type"] == "Error"
    assert api.client.get(created["href"], headers=api.gz_read).json() == created


def test_prepaid_account_takes_no_credit_limit(api):
    post(api, f"{PARTY}/individual", person(1))
    (customer,) = api.client.get(f"{CUSTOMER}/customer", headers=api.gz_read).json()
    owner = [{"id": customer["id"], "@referredType": "Customer", "name": "x"}]
    created = post(api, f"{ACCOUNT}/billingAccount", {"name": "n", "relatedParty": owner}).json()
    answer = api.client.patch(
        created["href"], json={"creditLimit": {"unit": "CNY", "value": 5}}, headers=api.gz_write
    )
    assert answer.status_code == 422
    assert answer.json()["code"] == "credit_limit"


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"{PARTY}/individual", {"fullName": "张三"}, 422),  # no ID document
        (f"{PARTY}/individual", person(1, birthDate="1990-01-01T00:00:00Z"), 422),
        (f"{PARTY}/individual", person(1, gender="female"), 422),  # the ID says male
        (f"{PARTY}/individual", person(1, givenName=5), 422),
        (f"{PARTY}/individual", [1, 2], 400),
        (f"{PARTY}/organization", {"tradingName": "x"}, 422),
        (
            f"{PARTY}/organization",
            {
                "tradingName": "x",
                "organizationIdentification": [{"identificationId": "91440101MA0000001X"}],
            },
            422,
        ),  # wrong check character
        (f"{CUSTOMER}/customer", {"name": "x"}, 422),
        (f"{CUSTOMER}/customer", {"name": "x", "engagedParty": {"@referredType": "Thing"}}, 422),
        (
            f"{CUSTOMER}/customer",
            {
                "name": "李四",
                "engagedParty": {
                    "@referredType": "Individual",
                    "fullName": "张三",
                    "individualIdentification": [{"identificationId": make_id(seq="001")}],
                },
            },
            422,
        ),
        (f"{ACCOUNT}/billingAccount", {"name": "x"}, 422),
        (
            f"{ACCOUNT}/billingAccount",
            {
                "name": "x",
                "relatedParty": [{"id": "nope", "@referredType": "Customer", "name": "x"}],
            },
            404,
        ),
    ],
)
def test_bad_bodies_are_refused_and_nothing_is_created(api, path, body, status):
    answer = post(api, path, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["@type"] == "Error"
    for listing in (f"{PARTY}/individual", f"{PARTY}/organization", f"{ACCOUNT}/billingAccount"):
        assert api.client.get(listing, headers=api.gz_read).headers["X-Total-Count"] == "0"


def test_invalid_json_is_400(api):
    answer = api.client.post(
        f"{PARTY}/individual",
        content=b"{not json",
        headers={**api.gz_write, "Content-Type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_json"


def test_a_duplicate_id_number_is_a_conflict(api):
    assert post(api, f"{PARTY}/individual", person(1)).status_code == 201
    again = post(api, f"{PARTY}/individual", person(1, "李四"))
    assert again.status_code == 409
    assert again.json()["code"] == "id_number_taken"


def test_unrouted_methods_answer_in_the_tmf_shape(api):
    answer = api.client.delete(f"{CUSTOMER}/customer/x", headers=api.gz_write)
    assert answer.status_code == 405
    assert answer.json()["@type"] == "Error"
    missing = api.client.get(f"{ACCOUNT}/partyAccount", headers=api.gz_read)
    assert missing.status_code == 404


def test_error_messages_follow_accept_language(api):
    path = f"{CUSTOMER}/customer/nobody"
    english = api.client.get(path, headers={**api.gz_read, "Accept-Language": "en"}).json()
    chinese = api.client.get(path, headers={**api.gz_read, "Accept-Language": "zh-CN"}).json()
    assert english["code"] == chinese["code"] == "customer_not_found"
    assert english["message"] == "No such customer"
    assert chinese["message"] != english["message"]
    assert chinese["reason"] == "No such customer"
    refused = post(
        api,
        f"{PARTY}/individual",
        {"fullName": "张三"},
        {**api.gz_write, "Accept-Language": "zh-CN"},
    ).json()
    assert refused["reason"] == "Give exactly one identity document in individualIdentification"
    assert refused["message"] != refused["reason"]


def test_changes_over_the_api_are_audited_as_the_client(api, engine):
    created = post(api, f"{PARTY}/individual", person(1)).json()
    (customer,) = api.client.get(f"{CUSTOMER}/customer", headers=api.gz_read).json()
    owner = [{"id": customer["id"], "@referredType": "Customer", "name": "x"}]
    account = post(
        api,
        f"{ACCOUNT}/billingAccount",
        {"name": "n", "relatedParty": owner, "accountType": "postpaid"},
    ).json()
    api.client.patch(
        account["href"], json={"creditLimit": {"unit": "CNY", "value": 9}}, headers=api.gz_write
    )
    api.client.patch(created["href"], json={"contactMedium": []}, headers=api.gz_write)
    with engine.connect() as conn:
        records = conn.execute(
            select(AuditRecord.action, AuditRecord.actor_kind, AuditRecord.detail).where(
                AuditRecord.subject_id == customer["id"]
            )
        ).all()
    actions = [r.action for r in records]
    assert "customer.registered" in actions
    assert "billing_account.opened" in actions
    assert "billing_account.credit_limit_changed" in actions
    assert "customer.contacts_changed" in actions
    assert {r.actor_kind for r in records} == {"api_client"}
    # Audit details carry masked data only.
    assert all("13800100001" not in str(r.detail) for r in records)
