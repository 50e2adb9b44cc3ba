"""Alarms the gateway raises itself: a terminal that lost its serial counter, and an
address flooding a terminal's id with bad MACs (PROTOCOL.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from teleserve.gateway.server import GatewayThread
from teleserve.terminals.fleet_models import alarm_table
from tests.terminals.conftest import register, tree  # noqa: F401 (fixtures)

from .test_server import SIGN_ON_BODY, business, kiosk, management, start  # noqa: F401
from .tsp_client import build
from .vectors import MASTER_KEY, TERMINAL


def _alarms(engine: Engine, deadline_s: float = 5.0) -> list[Any]:
    """The gateway raises them in the background: wait a little for them."""
    end = time.monotonic() + deadline_s
    while True:
        with engine.connect() as conn:
            rows = list(conn.execute(select(alarm_table)))
        if rows or time.monotonic() > end:
            return rows
        time.sleep(0.05)


def test_a_terminal_behind_its_own_serials_raises_an_alarm(
    start: Callable[..., GatewayThread],  # noqa: F811
    kiosk: str,  # noqa: F811
    engine: Engine,
):
    def logout(uow: Any, accepted: Any) -> Any:
        from teleserve.gateway.dispatch import Result

        return Result({})

    gw = start(handlers={1003: logout})
    from .test_server import sign_on

    with business(gw) as c:
        sid, key = sign_on(c)
        c.ask(build(TERMINAL, 40, 1003, {"customer_token": "ab" * 16}, key=key, session_id=sid))
    assert _alarms(engine, 0.2) == []
    with business(gw) as c:  # signs on saying its last serial is 3: it lost its counter
        reply = c.ask(build(TERMINAL, 4, 1, {**SIGN_ON_BODY, "last_serial": 3}, key=MASTER_KEY))
        assert reply.header.err_number == "00000"
    [alarm] = _alarms(engine)
    assert (alarm.terminal_id, alarm.code, alarm.device) == (TERMINAL, "counter_behind", "gateway")


def test_a_mac_failure_flood_raises_one_alarm(
    start: Callable[..., GatewayThread],  # noqa: F811
    kiosk: str,  # noqa: F811
    engine: Engine,
):
    gw = start(gateway_mac_failures_per_minute=2)
    for serial in range(1, 6):
        with management(gw) as c:
            c.send(build(TERMINAL, serial, 9004, {"config_version": 0}, key=bytes(32)))
            c.frame()
    rows = _alarms(engine)
    assert [(row.terminal_id, row.code) for row in rows] == [(TERMINAL, "mac_failures")]
