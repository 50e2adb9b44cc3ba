"""``teleserve demo`` as a newcomer runs it: a real process on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
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


def test_demo_starts_seeds_and_serves(tmp_path: Path):
    port = _free_port()
    teleserve = Path(sys.executable).with_name("teleserve")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELESERVE_")}
    log_path = tmp_path / "demo.log"
    log = log_path.open("w")  # a file, not a pipe: nobody reads a pipe while it serves
    process = subprocess.Popen(
        [str(teleserve), "demo", "--customers", "200", "--port", str(port)],
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
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    output = log_path.read_text()
    # what a newcomer reads: the URLs and the demo logins
    assert f"{base}/healthz" in output
    assert "gz01.agent" in output and "Teleserve-demo-2026" in output
    assert (tmp_path / "teleserve-demo.db").exists()
