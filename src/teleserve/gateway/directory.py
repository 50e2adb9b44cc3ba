"""The gateway's view of the terminal registry: ``terminals.service.terminal_access``
mapped onto what the order of checks needs (``checks.TerminalView``), cached briefly.

The cache is why a connected fleet costs no database read per frame: a terminal is read
at most once per ``settings.gateway_terminal_cache_s``. A status change or a key rotation
therefore reaches the gateway within that many seconds (docs/terminals.md allows it);
``forget`` drops an entry at once where the caller knows better.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from teleserve.core.actor import SYSTEM
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.checks import TerminalState, TerminalView
from teleserve.terminals import serials
from teleserve.terminals import service as terminals
from teleserve.terminals.models import DeviceMode
from teleserve.terminals.schemas import TerminalAccess


@dataclass(frozen=True, slots=True)
class TerminalEntry:
    """A terminal as the gateway knows it: the checks' view plus what handlers need."""

    view: TerminalView
    org_path: str
    device_mode: DeviceMode
    site_id: str = ""


def to_view(access: TerminalAccess) -> TerminalView:
    """docs/terminals.md: not admitted → decommissioned (10008), out of service → 10009."""
    if not access.admitted:
        state = TerminalState.DECOMMISSIONED
    elif access.out_of_service:
        state = TerminalState.OUT_OF_SERVICE
    else:
        state = TerminalState.IN_SERVICE
    return TerminalView(access.terminal_id, state, access.master_keys)


class TerminalDirectory:
    """Blocking lookups (call them from a worker thread, never on the event loop)."""

    def __init__(self, engine: Engine, ttl_s: float) -> None:
        self._engine = engine
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, TerminalEntry | None]] = {}

    def cached(self, terminal_id: str) -> tuple[bool, TerminalEntry | None]:
        """(True, entry) when a fresh entry is cached — no database, safe on the event
        loop; (False, None) when ``get`` must read."""
        with self._lock:
            hit = self._cache.get(terminal_id)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return True, hit[1]
        return False, None

    def get(self, terminal_id: str) -> TerminalEntry | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(terminal_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        with UnitOfWork(self._engine, SYSTEM, readonly=True) as uow:
            access = terminals.terminal_access(uow, terminal_id)
        entry = (
            None
            if access is None
            else TerminalEntry(to_view(access), access.org_path, access.device_mode, access.site_id)
        )
        if self._ttl > 0:
            with self._lock:
                # Unknown ids are cached too (a flood of made-up ids costs one read per
                # id per TTL), but the cache never outgrows a fleet's worth of entries.
                if len(self._cache) > 100_000:
                    self._cache.clear()
                self._cache[terminal_id] = (now, entry)
        return entry

    def forget(self, terminal_id: str) -> None:
        with self._lock:
            self._cache.pop(terminal_id, None)

    def last_serial(self, terminal_id: str) -> int:
        """The highest serial recorded for the terminal (SIGN_ON answers it)."""
        with UnitOfWork(self._engine, SYSTEM, readonly=True) as uow:
            return serials.last_serial(uow.connection, terminal_id)
