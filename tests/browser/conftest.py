"""Browser tests: a real ``teleserve serve`` process on a loopback port, over a fresh
SQLite file seeded with a small demo operator, driven by Playwright in Debian's Chromium
(``/usr/bin/chromium``; a browser is never downloaded).

They run in the SQLite half only: the server-side logic is covered on both databases by
the TestClient tests in ``tests/console``. Without Chromium they are skipped with the
reason — unless ``TELESERVE_REQUIRE_BROWSER=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from teleserve.core.db import make_engine

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SEED_CUSTOMERS = 200


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("TELESERVE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def _browser_half() -> None:
    if os.environ.get("TELESERVE_TEST_DB", "sqlite") != "sqlite":
        pytest.skip("browser tests run in the SQLite half (TestClient tests cover PostgreSQL)")
    if not CHROMIUM.exists():
        _skip_or_fail(f"{CHROMIUM} is missing (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    database_url: str
    engine: Engine


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("console-server")
    database_url = f"sqlite:///{workdir / 'console.db'}"
    teleserve = str(Path(sys.executable).with_name("teleserve"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELESERVE_")}
    env.update(
        TELESERVE_DATABASE_URL=database_url,
        TELESERVE_MODE="demo",
        TELESERVE_LOG_JSON="false",
        TELESERVE_AUDIT_CHECKPOINT_DIR=str(workdir / "checkpoints"),
        TELESERVE_AUDIT_SIGNING_KEY_FILE=str(workdir / "audit.key"),
        # serve --role all includes the TSP/1 gateway: any free ports, so parallel runs
        # never collide on 7070 / 7071.
        TELESERVE_GATEWAY_BUSINESS_PORT="0",
        TELESERVE_GATEWAY_MANAGEMENT_PORT="0",
    )
    for command in (
        ["db", "upgrade", "--json"],
        ["seed", "--customers", str(SEED_CUSTOMERS), "--json"],
    ):
        subprocess.run(
            [teleserve, *command],
            cwd=workdir,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    port = _free_port()
    log_path = workdir / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [teleserve, "serve", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    engine = make_engine(database_url)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the server exited early:\n" + log_path.read_text()
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        yield Server(base, database_url, engine)
    finally:
        engine.dispose()
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object, server: Server) -> Iterator[object]:
    context = browser.new_context(base_url=server.base, accept_downloads=True)  # type: ignore[attr-defined]
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


@dataclass(frozen=True)
class DemoCustomer:
    id: str
    number: str
    name: str


def customers_of(server: Server, org_prefix: str) -> list[DemoCustomer]:
    with server.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, number, name FROM cust_customer WHERE org_path LIKE :p "
                "AND category = 'individual' ORDER BY number"
            ),
            {"p": org_prefix + "%"},
        ).all()
    return [DemoCustomer(r.id, r.number, r.name) for r in rows]
