"""Shared fixtures: a clean database per test on SQLite (default) or PostgreSQL.

Choose the backend with ``TELESERVE_TEST_DB=sqlite|postgresql``. The PostgreSQL half uses
``TELESERVE_TEST_PG_URL`` (default: the local server's ``test`` database as ``postgres``)
and creates one database per xdist worker. If PostgreSQL is unreachable the half is
skipped with a clear line — unless ``TELESERVE_REQUIRE_PG=1`` (CI), where it fails.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text

from teleserve.core.actor import SYSTEM, Actor
from teleserve.core.clock import FrozenClock, set_clock
from teleserve.core.db import make_engine
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.models import load_all

hypothesis_settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

BACKEND = os.environ.get("TELESERVE_TEST_DB", "sqlite")
PG_URL = os.environ.get(
    "TELESERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_report_header(config: pytest.Config) -> str:
    return f"teleserve test database: {BACKEND}"


def _worker() -> str:
    # TELESERVE_TEST_DB_SUFFIX lets several checkouts share one PostgreSQL server.
    suffix = os.environ.get("TELESERVE_TEST_DB_SUFFIX", "")
    return suffix + os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"teleserve_test_{_worker()}"
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # connection refused, auth, ...
        message = f"PostgreSQL unreachable at {PG_URL}: {exc.__class__.__name__}: {exc}"
        if os.environ.get("TELESERVE_REQUIRE_PG") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    finally:
        admin.dispose()
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def _pg_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = request.getfixturevalue("pg_url")
    engine = make_engine(url, pool_size=5)
    metadata = load_all().metadata
    metadata.drop_all(engine)
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if BACKEND == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Iterator[Settings]:
    s = Settings(
        mode=Mode.demo,
        database_url=db_url,
        audit_checkpoint_dir=tmp_path / "checkpoints",
        audit_signing_key_file=tmp_path / "audit.key",
    )
    use_settings(s)
    yield s
    use_settings(None)


@pytest.fixture
def engine(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Engine]:
    """A database with every table and no rows."""
    metadata = load_all().metadata
    if BACKEND == "postgresql":
        pg: Engine = request.getfixturevalue("_pg_engine")
        # DELETE, not TRUNCATE: truncating ~40 (mostly empty) tables costs ~0.7 s per
        # test, deleting from them ~12 ms. Children first, for the foreign keys.
        with pg.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
        yield pg
        return
    eng = make_engine(settings.database_url)
    metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def make_uow(engine: Engine) -> Callable[..., UnitOfWork]:
    def factory(actor: Actor = SYSTEM, **kwargs: object) -> UnitOfWork:
        return UnitOfWork(engine, actor, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture
def frozen_clock() -> Iterator[FrozenClock]:
    fc = FrozenClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    previous = set_clock(fc)
    yield fc
    set_clock(previous)


@pytest.fixture
def tmf(make_uow: Callable[..., UnitOfWork], settings: Settings, engine: Engine) -> Any:
    """The HTTP app on this test's database with an org tree and bearer-token helpers
    (tests/tmf_support.py)."""
    from fastapi.testclient import TestClient

    from teleserve.web.app import create_app
    from tests.tmf_support import build_harness

    return build_harness(make_uow, TestClient(create_app(settings, engine)))
