"""The demo's kiosk processes: started once the gateway listens, stopped with the demo.

Two kinds of child process, both on the loopback gateway:

- the newcomer's kiosk: ``teleserve kiosk --terminal-id … --ui-port 8800 --devices sim``,
  the real agent program with its touch UI, driven by nobody but the person at it;
- the customers: ``python -m teleserve.demo.customers``, hosting every other kiosk's
  agent with simulated customers paying at it (see ``demo.customers`` for why in one
  process).

Their output goes to log files in the kiosk folder, so the demo's console stays readable.
Stopping sends SIGTERM (both stop cleanly on it: the agents sign off), waits, and kills
what is left. A child that fails (a non-zero exit) while the demo runs is reported once.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from teleserve.demo.customers import KioskPlan

STOP_TIMEOUT_S = 15.0
WATCH_EVERY_S = 2.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


def kiosk_command(
    kiosk: KioskPlan, host: str, business_port: int, management_port: int, ui_port: int
) -> list[str]:
    """``teleserve kiosk`` for one terminal (``python -m teleserve.cli``: the same
    program, whatever ``PATH`` says)."""
    return [
        sys.executable,
        "-m",
        "teleserve.cli",
        "kiosk",
        "--terminal-id",
        kiosk.terminal_id,
        "--key-file",
        str(kiosk.key_file),
        "--server",
        f"{host}:{business_port}",
        "--management-port",
        str(management_port),
        "--ui-port",
        str(ui_port),
        "--devices",
        "sim",
        "--data-dir",
        str(kiosk.data_dir),
    ]


def customers_command(
    fleet_file: Path,
    host: str,
    business_port: int,
    management_port: int,
    pace_s: float,
    collect_at: int | None = None,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "teleserve.demo.customers",
        "--fleet",
        str(fleet_file),
        "--server",
        f"{host}:{business_port}",
        "--management-port",
        str(management_port),
        "--pace",
        str(pace_s),
    ]
    if collect_at is not None:
        command += ["--collect-at", str(collect_at)]
    return command


class DemoFleet:
    """The running child processes."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.children: list[Child] = []
        self._report = report
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self, name: str, command: list[str], log_path: Path) -> None:
        log = log_path.open("ab")
        try:
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        except BaseException:
            log.close()
            raise
        self.children.append(Child(name, process, log_path, log))
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="demo-fleet", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        reported: set[str] = set()
        while not self._stopping.wait(WATCH_EVERY_S):
            for child in list(self.children):
                code = child.process.poll()
                # 0: stopped as asked (Ctrl-C in a terminal reaches the children too).
                if code and child.name not in reported and not self._stopping.is_set():
                    reported.add(child.name)
                    self._report(f"{child.name} stopped (exit code {code}); see {child.log_path}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to every child, then SIGKILL to whatever is still there at the end of
        ``timeout``. Safe to call twice."""
        self._stopping.set()
        for child in self.children:
            if child.process.poll() is None:
                child.process.terminate()
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
            child.log.close()
        if self._watcher is not None:
            self._watcher.join(timeout=WATCH_EVERY_S * 2)
        self.children = []
