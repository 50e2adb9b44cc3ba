"""Console fixtures: a seeded demo operator, a TestClient, and logging in through the form.

The demo seed gives the organisation tree, staff of every role (demo password, the demo
TOTP secret for MFA roles) and a few dozen customers spread over the cities.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from teleserve.core.clock import FrozenClock
from teleserve.core.throttle import Throttle, set_throttle
from teleserve.demo.seed import DEMO_PASSWORD, DEMO_TOTP_SECRET, seed_database
from teleserve.iam import passwords
from teleserve.web.app import create_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    previous = passwords.use_params(passwords.Argon2Params(1, 1024, 1))
    yield
    passwords.use_params(previous)


@pytest.fixture(autouse=True)
def fresh_throttle() -> Iterator[None]:
    previous = set_throttle(Throttle())
    yield
    set_throttle(previous)


@dataclass(frozen=True)
class SeededCustomer:
    id: str
    number: str
    name: str
    org_path: str


@pytest.fixture
def seeded(engine: Engine, frozen_clock: FrozenClock) -> list[SeededCustomer]:
    seed_database(engine, customers=40, progress=False)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, number, name, org_path FROM cust_customer ORDER BY number")
        ).all()
    return [SeededCustomer(r.id, r.number, r.name, r.org_path) for r in rows]


@pytest.fixture
def client(settings: Any, engine: Engine, seeded: list[SeededCustomer]) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as c:
        yield c


def csrf_of(client: TestClient, path: str = "/console/login") -> str:
    match = CSRF.search(client.get(path).text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def totp_now(clock: FrozenClock, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(DEMO_TOTP_SECRET).at(clock.now().timestamp() + 30 * steps_ahead)


@pytest.fixture
def login(client: TestClient) -> Callable[..., Any]:
    """login("gz01.agent") posts the login form (with a code if given) and returns the
    response, redirects not followed."""

    def do(username: str, password: str = DEMO_PASSWORD, code: str = "", **headers: str) -> Any:
        token = csrf_of(client)
        return client.post(
            "/console/login",
            data={"username": username, "password": password, "code": code, "csrf_token": token},
            headers=headers,
            follow_redirects=False,
        )

    return do


def in_scope(customers: list[SeededCustomer], prefix: str) -> list[SeededCustomer]:
    return [c for c in customers if c.org_path.startswith(prefix)]
