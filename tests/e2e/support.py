"""What the end-to-end tests with real processes share: a migrated database of their
own (SQLite file, or a scratch PostgreSQL database), the demo operator with registered
terminals and their master keys, and ``teleserve serve`` as a restartable process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from teleserve.core import migrate
from teleserve.core.actor import SYSTEM
from teleserve.core.db import make_engine
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.demo.seed import seed_database
from teleserve.inventory.models import Subscription
from teleserve.terminals import service as terminals

BACKEND = os.environ.get("TELESERVE_TEST_DB", "sqlite")
PG_ADMIN = os.environ.get(
    "TELESERVE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TERMINALS = 4


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def database(tmp_path: Path) -> Iterator[str]:
    """A migrated database of its own (the server process is started on it)."""
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path / 'e2e.db'}"
        return
    name = f"teleserve_e2e_{os.environ.get('TELESERVE_TEST_DB_SUFFIX', '')}"
    name += os.environ.get("PYTEST_XDIST_WORKER", "main")
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@dataclass
class Setup:
    url: str
    folder: Path
    keys: dict[str, bytes]
    numbers: list[str]


@pytest.fixture
def setup(database: str, tmp_path: Path) -> Iterator[Setup]:
    settings = Settings(
        mode=Mode.demo,
        database_url=database,
        audit_checkpoint_dir=tmp_path / "checkpoints",
        audit_signing_key_file=tmp_path / "audit.key",
    )
    use_settings(settings)
    migrate.upgrade(database)
    engine = make_engine(database)
    try:
        seed_database(engine, customers=40, progress=False)
        keys: dict[str, bytes] = {}
        with UnitOfWork(engine, SYSTEM) as uow:
            for n in range(TERMINALS):
                made = terminals.register_terminal(
                    uow, {"terminal_id": f"E2E-{n}", "site": "GZ01", "device_mode": "sim"}
                )
                keys[f"E2E-{n}"] = bytes.fromhex(made.master_key)
            uow.commit()
        with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
            numbers = list(
                uow.session.scalars(
                    select(Subscription.service_number).where(
                        Subscription.kind == "mobile", Subscription.status != "terminated"
                    )
                )
            )
    finally:
        engine.dispose()
    yield Setup(database, tmp_path, keys, numbers)
    use_settings(None)


class Server:
    """``teleserve serve`` as deployed, on fixed loopback ports so it can be restarted."""

    def __init__(self, setup: Setup, fronts: int = 0) -> None:
        self.setup = setup
        self.fronts = fronts  # gateway front processes (settings.gateway_processes)
        self.port = free_port()
        self.management_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        teleserve = Path(sys.executable).with_name("teleserve")
        folder = self.setup.folder
        sqlite = self.setup.url.startswith("sqlite")
        role = ["--role", "all", "--port", str(free_port())] if sqlite else ["--role", "gateway"]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TELESERVE_")},
            "TELESERVE_MODE": "demo",
            "TELESERVE_DATABASE_URL": self.setup.url,
            "TELESERVE_AUDIT_CHECKPOINT_DIR": str(folder / "checkpoints"),
            "TELESERVE_AUDIT_SIGNING_KEY_FILE": str(folder / "audit.key"),
            "TELESERVE_GATEWAY_BUSINESS_PORT": str(self.port),
            "TELESERVE_GATEWAY_MANAGEMENT_PORT": str(self.management_port),
            "TELESERVE_GATEWAY_PROCESSES": str(self.fronts),
        }
        self.starts += 1
        log = (folder / f"server-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [str(teleserve), "serve", *role], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, (folder / f"server-{self.starts}.log").read_text()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                # With front processes the first one may listen before the others.
                log_text = (folder / f"server-{self.starts}.log").read_text()
                if not self.fronts or "gateway.processes_listening" in log_text:
                    return
            assert time.monotonic() < deadline, "the gateway did not listen"
            time.sleep(0.1)

    def front_pids(self) -> list[int]:
        """The gateway front processes the server started (its spawned children)."""
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == self.process.pid and b"spawn_main" in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
        return found

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
