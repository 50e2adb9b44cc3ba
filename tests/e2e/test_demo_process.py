"""``teleserve demo`` as a newcomer runs it: a real process on a loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("TELESERVE_TEST_DB", "sqlite") != "sqlite",
    reason="the demo runs on its embedded SQLite database only",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(database: Path, sql: str) -> list[tuple[object, ...]]:
    """Read the running demo's database (read-only, beside its writer)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        db.execute("PRAGMA busy_timeout = 5000")
        return db.execute(sql).fetchall()


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (Linux /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if text in args:
            found.append(args)
    return found


def test_demo_starts_seeds_serves_and_runs_its_kiosks(tmp_path: Path):
    port = _free_port()
    ui_port = _free_port()
    teleserve = Path(sys.executable).with_name("teleserve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELESERVE_")}
    log_path = tmp_path / "demo.log"
    log = log_path.open("w")  # a file, not a pipe: nobody reads a pipe while it serves
    process = subprocess.Popen(
        [
            str(teleserve),
            "demo",
            "--customers",
            "200",
            "--port",
            str(port),
            # One kiosk a hall (7), customers every second, boxes collected at 4 notes:
            # every kind of traffic within seconds.
            "--kiosks-per-hall",
            "1",
            "--kiosk-ui-port",
            str(ui_port),
            "--pace",
            "1",
            "--cash-collect-at",
            "4",
        ],
        cwd=tmp_path,
        # The demo includes the TSP/1 gateway: any free ports, so runs never collide.
        env={
            **env,
            "COLUMNS": "200",
            "TELESERVE_GATEWAY_BUSINESS_PORT": "0",
            "TELESERVE_GATEWAY_MANAGEMENT_PORT": "0",
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    database = tmp_path / "teleserve-demo.db"
    kiosks = tmp_path / "teleserve-demo-kiosks"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "teleserve demo exited early"
            assert time.monotonic() < deadline, "teleserve demo did not come up"
            time.sleep(0.3)
        ready = httpx.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] == "sqlite"
        metrics = httpx.get(f"{base}/metrics", timeout=30).text
        assert "teleserve_http_requests_total" in metrics

        # The kiosks sign on and report (the UI kiosk is its own `teleserve kiosk`
        # process), customers pay by cash and card, some to unknown numbers (held),
        # and nearly full boxes are collected.
        deadline = time.monotonic() + 40
        while True:
            reported = {
                r[0] for r in _query(database, "SELECT terminal_id FROM terminal_device_state")
            }
            channels = dict(
                _query(
                    database,
                    "SELECT channel || ':' || status, count(*) FROM payment "
                    "WHERE terminal_id IS NOT NULL GROUP BY 1",
                )
            )
            collections = _query(database, "SELECT discrepancy FROM terminal_cash_collection")
            done = (
                len(reported) == 7
                and channels.get("kiosk_cash:completed", 0) > 0
                and channels.get("kiosk_card:completed", 0) > 0
                and any(key.endswith(":held") for key in channels)
                and collections
            )
            if done:
                break
            assert process.poll() is None, "teleserve demo exited early"
            assert time.monotonic() < deadline, (reported, channels, collections)
            time.sleep(0.5)
        assert "GZ01-K01" in reported  # the kiosk with the UI, which serves its screens
        assert httpx.get(f"http://127.0.0.1:{ui_port}/", timeout=10).status_code == 200
        # Every note a customer fed is in the count: the server expected what was there.
        assert {row[0] for row in collections} == {0}
        assert _processes_mentioning(str(kiosks)), "the kiosk processes are not running"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    output = log_path.read_text()
    assert process.returncode == 0, output[-3000:]
    # what a newcomer reads: the URLs, the kiosks and the demo logins
    assert f"{base}/healthz" in output and f"{base}/console/" in output
    assert f"http://127.0.0.1:{ui_port}" in output
    assert "7 simulated kiosks running" in output
    assert "gz01.agent" in output and "Teleserve-demo-2026" in output
    assert database.exists()
    # the keys the registry showed once: readable by the user only
    assert stat.S_IMODE(kiosks.stat().st_mode) == 0o700
    key_files = sorted(kiosks.glob("*.key"))
    assert len(key_files) == 7
    assert {stat.S_IMODE(f.stat().st_mode) for f in key_files} == {0o600}
    # stopping the demo stopped its kiosks
    assert _processes_mentioning(str(kiosks)) == []
