"""POST /oauth/token over HTTP (RFC 6749 section 4.4)."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgUnitSpec
from teleserve.web.app import create_app


@pytest.fixture
def client_credentials(make_uow):
    with make_uow() as uow:
        units = iam.create_org_units_batch(
            uow,
            [
                OrgUnitSpec(code="TS", name_zh="运营商", name_en="Operator", level="operator"),
                OrgUnitSpec(
                    code="GD",
                    name_zh="广东",
                    name_en="Guangdong",
                    level="province",
                    parent_code="TS",
                ),
            ],
        )
        created = iam.create_api_client(uow, "CRM", units[1].id, "customers.read catalog.read")
        uow.commit()
    return created.client.client_id, created.secret


@pytest.fixture
def http(engine, settings):
    return TestClient(create_app(settings, engine))


def _basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_basic_credentials_get_a_bearer_token(http, client_credentials, make_uow):
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "customers.read"},
        headers=_basic(*client_credentials),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "customers.read"
    assert body["expires_in"] > 0 and response.headers["cache-control"] == "no-store"
    with make_uow() as uow:
        actor = iam.actor_for_token(uow, body["access_token"])
    assert actor.org_path == "/TS/GD/" and actor.can("customers.read")
    assert not actor.can("catalog.read")  # narrowed to the scope asked for


def test_form_credentials_work_too(http, client_credentials):
    client_id, secret = client_credentials
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert response.status_code == 200
    assert set(response.json()["scope"].split()) == {"customers.read", "catalog.read"}


def test_bad_secret_is_401_in_the_requested_language(http, client_credentials):
    client_id, _ = client_credentials
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={**_basic(client_id, "wrong"), "Accept-Language": "en"},
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    zh = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers=_basic(client_id, "wrong"),
    )
    assert zh.json()["error_description"] != response.json()["error_description"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "iam.users.write"}, "invalid_scope"),
    ],
)
def test_bad_requests_are_400(http, client_credentials, data, error):
    response = http.post("/oauth/token", data=data, headers=_basic(*client_credentials))
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_malformed_basic_header_is_401(http):
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic !!!"},
    )
    assert response.status_code == 401
