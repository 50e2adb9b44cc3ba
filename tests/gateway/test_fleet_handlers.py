"""The management channel (9001–9006) over real TCP on loopback: one request, one answer
MAC'd with the master key, then close; the answers PROTOCOL.md's table gives, the
recorded ones (9002, 9003, 9005) answered again to a resend, and the refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from teleserve.core.clock import business_date
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.frame import Frame
from teleserve.gateway.handlers import fleet as fleet_handlers
from teleserve.gateway.server import GatewayThread
from teleserve.terminals import alarms, cash, fleet, service
from teleserve.terminals.fleet_models import alarm_table, reconciliation_table
from tests.terminals.conftest import GZ_OPS, GZ_READER, register, staff, tree  # noqa: F401
from tests.terminals.fleet_support import kiosk_payment, report

from .test_server import kiosk, management, start  # noqa: F401 (fixtures)
from .tsp_client import body_of, build, mac_ok
from .vectors import MASTER_KEY, TERMINAL


@pytest.fixture
def gw(start: Callable[..., GatewayThread], kiosk: str) -> GatewayThread:  # noqa: F811
    return start(handlers=fleet_handlers.HANDLERS)


def ask(gw: GatewayThread, serial: int, serv_type: int, body: dict[str, Any] | bytes) -> Frame:
    with management(gw) as c:
        reply = c.ask(build(TERMINAL, serial, serv_type, body, key=MASTER_KEY))
        assert mac_ok(reply, MASTER_KEY) and reply.header.session_id == "00000000"
        assert (reply.header.serial, reply.header.serv_type) == (serial, serv_type)
        assert c.closed_by_server()
    return reply


def ok(reply: Frame) -> dict[str, Any]:
    assert reply.header.err_number == "00000", body_of(reply)
    return body_of(reply)


def run(
    make_uow: Callable[..., UnitOfWork],
    actor: Any,
    fn: Callable[..., Any],
    *args: Any,
    **kwargs: Any,
) -> Any:
    with make_uow(actor) as uow:
        result = fn(uow, *args, **kwargs)
        uow.commit()
    return result


def test_status_report_answers_commands_and_config_version(gw, make_uow):
    commander = staff("/TS/GD/GZ/", "terminals.command", "terminals.read")
    queued = run(make_uow, commander, fleet.queue_command, TERMINAL, "reload_config")
    run(make_uow, GZ_OPS, fleet.publish_config, "terminal", {"volume": 3}, target=TERMINAL)
    body = ok(ask(gw, 1, 9001, report(acceptor="fault")))
    assert body == {
        "commands": [{"command_id": queued.command_id, "type": "reload_config"}],
        "config_version": 1,
    }
    alarms_now = run(make_uow, GZ_READER, alarms.list_alarms)
    assert [(a.code, a.device) for a in alarms_now] == [("device_fault", "cash_acceptor")]
    # Taken from an out-of-service terminal too; and a resend is processed again.
    run(make_uow, GZ_OPS, service.put_out_of_service, TERMINAL)
    assert ok(ask(gw, 1, 9001, report()))["config_version"] == 1
    assert run(make_uow, GZ_READER, fleet.device_state, TERMINAL).able is False


def test_a_bad_status_report_is_10005(gw):
    body = report()
    body["printer_paper"] = "empty"
    reply = ask(gw, 1, 9001, body)
    assert reply.header.err_number == "10005"
    assert body_of(reply)["error"]["details"]["fields"] == ["printer_paper"]


def test_alarm_is_recorded_and_a_resend_gets_the_same_answer(gw, engine: Engine):
    body = {
        "alarm_code": "PRN_JAM",
        "severity": "major",
        "device": "printer",
        "message": "paper jam",
        "raised_ms": 1764115200000,
    }
    raw = b'{"alarm_code":"PRN_JAM","severity":"major","device":"printer",' + (
        b'"message":"paper jam","raised_ms":1764115200000}'
    )
    first = ok(ask(gw, 5, 9002, raw))
    assert ok(ask(gw, 5, 9002, raw)) == first  # the recorded answer
    assert ask(gw, 5, 9002, {**body, "message": "other"}).header.err_number == "10003"
    again = ok(ask(gw, 6, 9002, body))  # a new serial: the same live alarm
    assert again == first
    with engine.connect() as conn:
        row = conn.execute(select(alarm_table)).mappings().one()
    assert (row["id"], row["occurrences"], row["source"]) == (first["alarm_id"], 2, "terminal")


def test_cash_collection_answers_expected_and_discrepancy(gw, make_uow, engine: Engine):
    kiosk_payment(make_uow, TERMINAL, 1, notes=[{"value": 10000, "count": 2}])
    kiosk_payment(make_uow, TERMINAL, 2, notes=[{"value": 5000, "count": 1}])
    body = {
        "box_id": "BOX-1",
        "counted": [{"value": 10000, "count": 2}],
        "operator_id": "op-7",
        "collected_ms": 1764115200000,
        "new_box_id": "BOX-2",
    }
    answer = ok(ask(gw, 10, 9003, body))
    assert answer["expected"] == [{"value": 5000, "count": 1}, {"value": 10000, "count": 2}]
    assert answer["discrepancy"] == -5000
    assert ok(ask(gw, 10, 9003, body)) == answer  # the resend: recorded
    twice = ask(gw, 11, 9003, {**body, "new_box_id": "BOX-3"})
    assert twice.header.err_number == "20005"
    assert body_of(twice)["error"]["details"] == {"collection_id": answer["collection_id"]}
    assert ask(gw, 11, 9003, {**body, "new_box_id": "BOX-3"}).header.err_number == "20005"
    reused = ask(gw, 12, 9003, {**body, "box_id": "BOX-2", "new_box_id": "BOX-1"})
    assert reused.header.err_number == "10005"
    assert body_of(reused)["error"]["details"] == {"fields": ["new_box_id"]}
    [shortage] = run(make_uow, GZ_READER, cash.list_exceptions)
    assert (shortage.kind, shortage.amount) == ("shortage", 5000)
    assert ok(ask(gw, 12, 9003, {**body, "box_id": "BOX-2", "new_box_id": "BOX-4", "counted": []}))


def test_config_pull_sends_a_newer_configuration(gw, make_uow):
    assert ok(ask(gw, 1, 9004, {"config_version": 0})) == {"config_version": 0, "config": {}}
    run(
        make_uow,
        GZ_OPS,
        fleet.publish_config,
        "site",
        {"idle_s": 90, "lang": "zh"},
        target="GZTH-K1",
    )
    assert ok(ask(gw, 2, 9004, {"config_version": 0})) == {
        "config_version": 1,
        "config": {"idle_s": 90, "lang": "zh"},
    }
    assert ok(ask(gw, 3, 9004, {"config_version": 1})) == {"config_version": 1, "config": {}}


def test_command_ack(gw, make_uow):
    commander = staff("/TS/GD/GZ/", "terminals.command", "terminals.read")
    queued = run(make_uow, commander, fleet.queue_command, TERMINAL, "restart")
    ok(ask(gw, 1, 9001, report()))
    ack = {"command_id": queued.command_id, "result": "done", "detail": "restarted"}
    assert ok(ask(gw, 2, 9005, ack)) == {}
    assert ok(ask(gw, 2, 9005, ack)) == {}
    [command] = run(make_uow, GZ_READER, fleet.list_commands)
    assert (command.status, command.detail) == ("done", "restarted")
    unknown = ask(gw, 3, 9005, {"command_id": "0" * 32, "result": "failed"})
    assert unknown.header.err_number == "20008"
    assert ask(gw, 3, 9005, {"command_id": "0" * 32, "result": "failed"}).header.err_number == (
        "20008"
    )
    assert ok(ask(gw, 4, 9001, report()))["commands"] == []


def test_journal_upload(gw, make_uow, engine: Engine):
    kiosk_payment(make_uow, TERMINAL, 1, notes=[{"value": 10000, "count": 1}])
    kiosk_payment(make_uow, TERMINAL, 2, card_amount=5000)
    day = business_date().isoformat()
    entries = [
        {"serial": 1, "serv_type": 2001, "amount": 10000, "status": "held"},
        {"serial": 3, "serv_type": 2001, "amount": 10000, "status": "completed"},
    ]
    answer = ok(ask(gw, 10, 9006, {"business_date": day, "entries": entries}))
    assert answer == {
        "matched": 1,
        "missing_on_server": [3],
        "missing_on_terminal": [2],
        "mismatched": [],
    }
    dup = ask(gw, 11, 9006, {"business_date": day, "entries": [entries[0], entries[0]]})
    assert dup.header.err_number == "10005"
    assert body_of(dup)["error"]["details"] == {"fields": ["entries[1].serial"]}
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(reconciliation_table)) == 1
