"""Console fixtures: a seeded demo operator, a TestClient, and logging in through the form.

The demo seed gives the organisation tree, staff of every role (demo password, the demo
TOTP secret for MFA roles) and a few dozen customers spread over the cities.

Seeding costs seconds (the number pool alone is a 10,000-number block per city), so each
test worker seeds once and every later test gets a copy of that database: on SQLite
through SQLite's backup API, on PostgreSQL by copying every table from a snapshot schema
of the worker's database (the ``engine`` fixture has already emptied the tables). Every
test still starts from the same fully seeded database, made under the same frozen clock.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from teleserve.core.clock import FrozenClock
from teleserve.core.throttle import Throttle, set_throttle
from teleserve.demo.seed import DEMO_PASSWORD, DEMO_TOTP_SECRET, seed_database
from teleserve.iam import passwords
from teleserve.models import load_all
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


# Where the PostgreSQL snapshot lives: a schema of the worker's own test database, which
# the engine fixture's row deletion (public tables only) leaves alone.
SNAPSHOT_SCHEMA = "console_seed_snapshot"


class SeedSnapshot:
    """The seeded database of one test worker, taken after its first seed."""

    def __init__(self, sqlite_file: Path) -> None:
        self.sqlite_file = sqlite_file
        self.taken = False

    def take(self, engine: Engine) -> None:
        if engine.dialect.name == "postgresql":
            with engine.begin() as conn:
                conn.execute(text(f"DROP SCHEMA IF EXISTS {SNAPSHOT_SCHEMA} CASCADE"))
                conn.execute(text(f"CREATE SCHEMA {SNAPSHOT_SCHEMA}"))
                for table in load_all().metadata.sorted_tables:
                    name = conn.dialect.identifier_preparer.quote(table.name)
                    conn.execute(
                        text(f"CREATE TABLE {SNAPSHOT_SCHEMA}.{name} AS TABLE public.{name}")
                    )
        else:
            with engine.connect() as conn:
                conn.commit()  # no transaction open while the pages are copied
                source = conn.connection.driver_connection
                assert isinstance(source, sqlite3.Connection)
                target = sqlite3.connect(self.sqlite_file)
                try:
                    source.backup(target)
                finally:
                    target.close()
        self.taken = True

    def restore(self, engine: Engine) -> None:
        if engine.dialect.name == "postgresql":
            # Parents first for the foreign keys; a self-reference (the org tree) is
            # checked at the end of its one INSERT. The ids of the BIGSERIAL tables were
            # drawn from sequences that never go back, so new rows cannot collide.
            with engine.begin() as conn:
                for table in load_all().metadata.sorted_tables:
                    name = conn.dialect.identifier_preparer.quote(table.name)
                    columns = ", ".join(
                        conn.dialect.identifier_preparer.quote(c.name) for c in table.columns
                    )
                    conn.execute(
                        text(
                            f"INSERT INTO public.{name} ({columns}) "
                            f"SELECT {columns} FROM {SNAPSHOT_SCHEMA}.{name}"
                        )
                    )
            return
        with engine.connect() as conn:
            conn.commit()
            target = conn.connection.driver_connection
            assert isinstance(target, sqlite3.Connection)
            source = sqlite3.connect(self.sqlite_file)
            try:
                source.backup(target)
            finally:
                source.close()
        engine.dispose()  # no pooled connection keeps state from before the copy


@pytest.fixture(scope="session")
def seed_snapshot(tmp_path_factory: pytest.TempPathFactory) -> SeedSnapshot:
    return SeedSnapshot(tmp_path_factory.mktemp("console-seed") / "seeded.db")


@pytest.fixture
def seeded(
    engine: Engine, frozen_clock: FrozenClock, seed_snapshot: SeedSnapshot
) -> list[SeededCustomer]:
    if seed_snapshot.taken:
        seed_snapshot.restore(engine)
    else:
        seed_database(engine, customers=40, progress=False)
        seed_snapshot.take(engine)
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
