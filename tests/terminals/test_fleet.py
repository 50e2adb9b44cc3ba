"""The fleet: status reports, alarms (raise, de-duplicate, acknowledge, clear, escalate),
remote commands and configuration versions — through the domain functions, on both
databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from teleserve.core import worker
from teleserve.core.clock import FrozenClock, utcnow
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import alarms, fleet, service, tasks
from teleserve.terminals.fleet_base import terminal_info
from teleserve.terminals.fleet_models import AlarmSource, alarm_table, config_table

from .conftest import ADMIN, GZ, GZ_OPS, GZ_READER, SZ_OPS, audit_actions, events, staff
from .fleet_support import report

COMMANDER = staff(GZ, "terminals.read", "terminals.command", user_id="cmd-gz")


def status(make_uow: Callable[..., UnitOfWork], terminal_id: str, body: dict[str, Any]) -> Any:
    with make_uow() as uow:
        answer = fleet.record_status_report(uow.connection, terminal_id, body)
        uow.commit()
    return answer


def live_alarms(engine: Engine, terminal_id: str) -> dict[tuple[str, str], Any]:
    a = alarm_table
    with engine.connect() as conn:
        rows = conn.execute(
            select(a).where(a.c.terminal_id == terminal_id, a.c.status != "cleared")
        ).mappings()
        return {(row["device"], row["code"]): row for row in rows}


# -- status reports --------------------------------------------------------------------


def test_a_report_is_stored_and_answered(make_uow, register, run):
    register("K1")
    answer = status(make_uow, "K1", report(version="3.0.1"))
    assert (answer.commands, answer.config_version) == ([], 0)
    state = run(GZ_READER, fleet.device_state, "K1")
    assert state.software_version == "3.0.1"
    assert state.devices["cash_acceptor"] == {"state": "ok"}
    assert [(n.value, n.count) for n in state.cash_box_notes] == [(10000, 3)]
    assert (state.cash_box_id, state.cash_box_count, state.cash_box_capacity) == ("BOX-1", 3, 1000)
    assert state.able and state.online
    assert run(GZ_READER, service.get_terminal, "K1").software_version == "3.0.1"
    # A terminal that never reported has no state; another city's staff do not see it.
    register("K2", site="GZ-K2")
    assert run(GZ_READER, fleet.device_state, "K2") is None
    with pytest.raises(NotFound):
        run(SZ_OPS, fleet.device_state, "K1")


def test_report_faults_raise_alarms_once_and_clear_them_when_over(make_uow, engine, register):
    register("K1")
    bad = report(acceptor="fault", paper="out", notes=[{"value": 10000, "count": 950}])
    status(make_uow, "K1", bad)
    first = live_alarms(engine, "K1")
    assert set(first) == {
        ("cash_acceptor", "device_fault"),
        ("printer", "paper_out"),
        ("cash_box", "cash_box_nearly_full"),
    }
    assert {row["source"] for row in first.values()} == {"report"}
    assert first[("cash_acceptor", "device_fault")]["severity"] == "major"
    status(make_uow, "K1", bad)  # the same conditions: the same alarms, counted
    second = live_alarms(engine, "K1")
    assert {k: r["id"] for k, r in second.items()} == {k: r["id"] for k, r in first.items()}
    assert {r["occurrences"] for r in second.values()} == {2}
    # The acceptor recovers, the paper runs low, the box fills up.
    status(
        make_uow,
        "K1",
        report(paper="low", notes=[{"value": 10000, "count": 1000}], scanner="offline"),
    )
    third = live_alarms(engine, "K1")
    assert set(third) == {
        ("printer", "paper_low"),
        ("cash_box", "cash_box_full"),
        ("scanner", "device_offline"),
    }
    status(make_uow, "K1", report())  # the scanner is not listed: its alarm stays
    assert set(live_alarms(engine, "K1")) == {("scanner", "device_offline")}
    status(make_uow, "K1", report(scanner="ok"))
    assert live_alarms(engine, "K1") == {}
    actions = [
        action for action, _ in audit_actions(engine) if action.startswith("terminals.alarm")
    ]
    assert actions.count("terminals.alarm_raised") == 6  # repeats are counted, not audited
    assert actions.count("terminals.alarm_cleared") == 6
    cleared = [p for t, p in events(engine) if t == alarms.ALARM_CLEARED_TOPIC]
    assert all(p["automatic"] for p in cleared)


def test_a_report_clears_a_terminal_alarm_only_for_a_device_it_lists(make_uow, engine, register):
    register("K1")
    with make_uow() as uow:
        for device in ("cash_acceptor", "card_module"):
            alarms.raise_alarm(
                uow.connection,
                "K1",
                "device_fault",
                "major",
                device,
                "jam",
                utcnow(),
                source=AlarmSource.terminal,
            )
        uow.commit()
    status(make_uow, "K1", report(acceptor="fault"))  # the same live alarm, not a second
    assert set(live_alarms(engine, "K1")) == {
        ("cash_acceptor", "device_fault"),
        ("card_module", "device_fault"),
    }
    status(make_uow, "K1", report())  # the acceptor is fine; the card module unreported
    [(key, row)] = live_alarms(engine, "K1").items()
    assert (key, row["source"]) == (("card_module", "device_fault"), "terminal")


def test_a_terminal_alarm_is_deduplicated_per_code_and_device(make_uow, engine, register, run):
    register("K1")
    at = utcnow()

    def raise_(code: str, severity: str, device: str = "printer") -> alarms.RaisedAlarm:
        with make_uow() as uow:
            raised = alarms.raise_alarm(
                uow.connection, "K1", code, severity, device, "jam", at, source=AlarmSource.terminal
            )
            uow.commit()
        return raised

    first = raise_("PRN_JAM", "minor")
    again = raise_("PRN_JAM", "critical")
    lower = raise_("PRN_JAM", "warning")
    assert first.created and not again.created and not lower.created
    assert first.alarm_id == again.alarm_id == lower.alarm_id
    alarm = run(GZ_READER, alarms.get_alarm, first.alarm_id)
    assert (alarm.occurrences, alarm.severity, alarm.source) == (3, "critical", "terminal")
    other_device = raise_("PRN_JAM", "minor", device="printer2")
    assert other_device.created and other_device.alarm_id != first.alarm_id
    # Audited: the new alarm and the raised severity; not the plain repeat.
    raised = [d for a, d in audit_actions(engine) if a == "terminals.alarm_raised"]
    assert [d.get("repeated", False) for d in raised] == [False, True, False]
    # Acknowledged: still the same live alarm. Cleared: the next raise is a new one.
    run(GZ_OPS, alarms.acknowledge_alarm, first.alarm_id)
    assert raise_("PRN_JAM", "minor").alarm_id == first.alarm_id
    run(GZ_OPS, alarms.clear_alarm, first.alarm_id, "paper path cleaned")
    fresh = raise_("PRN_JAM", "minor")
    assert fresh.created and fresh.alarm_id != first.alarm_id


def test_bad_alarm_input_is_refused(make_uow, register):
    register("K1")
    with make_uow() as uow:
        with pytest.raises(ValidationError):
            alarms.raise_alarm(uow.connection, "K1", "X", "fatal", "printer", "m", utcnow())
        with pytest.raises(ValidationError):
            alarms.raise_alarm(uow.connection, "K1", "", "major", "printer", "m", utcnow())
        with pytest.raises(ValidationError):
            alarms.raise_alarm(uow.connection, "K1", "X", "major", "printer", "m" * 1001, utcnow())


def test_staff_acknowledge_and_clear_with_audit_and_scope(make_uow, engine, register, run):
    register("K1")
    with make_uow() as uow:
        raised = alarms.raise_alarm(
            uow.connection, "K1", "mac_failures", "major", "gateway", "20 bad MACs", utcnow()
        )
        uow.commit()
    alarm_id = raised.alarm_id
    assert [a.alarm_id for a in run(GZ_READER, alarms.list_alarms, status="open")] == [alarm_id]
    assert run(SZ_OPS, alarms.list_alarms) == []
    with pytest.raises(NotFound):
        run(SZ_OPS, alarms.acknowledge_alarm, alarm_id)
    with pytest.raises(PermissionDenied):
        run(GZ_READER, alarms.acknowledge_alarm, alarm_id)
    acked = run(GZ_OPS, alarms.acknowledge_alarm, alarm_id, "on my way")
    assert (acked.status, acked.acknowledged_by, acked.note) == (
        "acknowledged",
        "ops-gz",
        "on my way",
    )
    with pytest.raises(Conflict):
        run(GZ_OPS, alarms.acknowledge_alarm, alarm_id)
    cleared = run(GZ_OPS, alarms.clear_alarm, alarm_id)
    assert (cleared.status, cleared.cleared_by) == ("cleared", "ops-gz")
    with pytest.raises(Conflict):
        run(GZ_OPS, alarms.clear_alarm, alarm_id)
    with pytest.raises(ValidationError):
        run(GZ_OPS, alarms.list_alarms, status="closed")
    actions = [(a, d.get("code")) for a, d in audit_actions(engine) if "alarm" in a]
    assert actions == [
        ("terminals.alarm_raised", "mac_failures"),
        ("terminals.alarm_acknowledged", "mac_failures"),
        ("terminals.alarm_cleared", "mac_failures"),
    ]
    topics = [t for t, _ in events(engine) if "alarm" in t]
    assert topics == [
        alarms.ALARM_RAISED_TOPIC,
        alarms.ALARM_ACKNOWLEDGED_TOPIC,
        alarms.ALARM_CLEARED_TOPIC,
    ]


def test_a_server_alarm_for_an_unknown_terminal_is_operator_wide(make_uow, tree, run):
    with make_uow() as uow:
        raised = alarms.raise_alarm(uow.connection, "GHOST", "mac", "major", "gw", "m", utcnow())
        uow.commit()
    assert run(GZ_OPS, alarms.list_alarms) == []
    assert [a.alarm_id for a in run(ADMIN, alarms.list_alarms)] == [raised.alarm_id]


def test_unacknowledged_alarms_escalate_on_the_timer(
    make_uow, engine, frozen_clock: FrozenClock, register, run
):
    register("K1")
    with make_uow() as uow:
        first = alarms.raise_alarm(uow.connection, "K1", "A", "major", "d", "m", utcnow())
        second = alarms.raise_alarm(uow.connection, "K1", "B", "major", "d", "m", utcnow())
        uow.commit()
    run(GZ_OPS, alarms.acknowledge_alarm, second.alarm_id)
    registry = worker.Registry()
    registry.every(tasks.ALARM_SWEEP_S, name="terminals.escalate_alarms")(tasks.escalate_alarms)

    def sweep() -> None:
        frozen_clock.advance(seconds=tasks.ALARM_SWEEP_S)  # the timer is due again
        assert worker.run_timers(engine, registry=registry).timers_run == 1

    def level(alarm_id: str) -> int:
        return int(run(GZ_READER, alarms.get_alarm, alarm_id).escalation_level)

    frozen_clock.advance(minutes=13)
    sweep()  # 14 minutes
    assert level(first.alarm_id) == 0
    sweep()  # 15 minutes
    assert level(first.alarm_id) == 1
    frozen_clock.advance(minutes=13)
    sweep()  # 14 minutes after the escalation
    assert level(first.alarm_id) == 1
    for _ in range(40):
        frozen_clock.advance(minutes=1)
        sweep()
    assert level(first.alarm_id) == alarms.MAX_ESCALATION_LEVEL  # capped
    assert level(second.alarm_id) == 0  # acknowledged: never escalates
    escalations = [p["escalation_level"] for t, p in events(engine) if t.endswith("escalated")]
    assert escalations == [1, 2, 3]
    assert "terminals.escalate_alarms" in {t.name for t in worker.DEFAULT_REGISTRY.timers()}


def test_fleet_events_are_declared():
    for topic in (
        alarms.ALARM_RAISED_TOPIC,
        alarms.ALARM_ESCALATED_TOPIC,
        fleet.COMMAND_QUEUED_TOPIC,
        fleet.CONFIG_PUBLISHED_TOPIC,
    ):
        assert worker.DEFAULT_REGISTRY.is_event(topic)


# -- commands --------------------------------------------------------------------------


def ack(
    make_uow: Callable[..., UnitOfWork], terminal_id: str, command_id: str, result: str
) -> None:
    with make_uow() as uow:
        fleet.acknowledge_command(uow.connection, terminal_id, command_id, result, "ok")
        uow.commit()


def test_commands_are_delivered_until_acknowledged(make_uow, engine, register, run):
    register("K1")
    register("K2", site="GZ-K2")
    restart = run(COMMANDER, fleet.queue_command, "K1", "restart")
    reload_ = run(COMMANDER, fleet.queue_command, "K1", "reload_config")
    assert restart.status == "pending"
    expected = [
        {"command_id": restart.command_id, "type": "restart"},
        {"command_id": reload_.command_id, "type": "reload_config"},
    ]
    assert status(make_uow, "K1", report()).commands == expected
    assert status(make_uow, "K1", report()).commands == expected  # lost answer: again
    assert status(make_uow, "K2", report()).commands == []
    listed = {c.command_id: c for c in run(GZ_READER, fleet.list_commands, terminal_id="K1")}
    assert (listed[restart.command_id].status, listed[restart.command_id].deliveries) == ("sent", 2)
    ack(make_uow, "K1", restart.command_id, "done")
    ack(make_uow, "K1", restart.command_id, "failed")  # the first acknowledgement decides
    assert status(make_uow, "K1", report()).commands == expected[1:]
    done = {c.command_id: c for c in run(GZ_READER, fleet.list_commands)}[restart.command_id]
    assert (done.status, done.detail) == ("done", "ok")
    # Unknown, or another terminal's: not found.
    for terminal, command in (("K1", "nope"), ("K2", reload_.command_id)):
        with make_uow() as uow, pytest.raises(fleet.UnknownCommand):
            fleet.acknowledge_command(uow.connection, terminal, command, "done")
    # Cancelled: no longer delivered; a finished command cannot be cancelled.
    run(COMMANDER, fleet.cancel_command, reload_.command_id, "not needed")
    assert status(make_uow, "K1", report()).commands == []
    with pytest.raises(Conflict):
        run(COMMANDER, fleet.cancel_command, restart.command_id)
    assert [a for a, _ in audit_actions(engine) if "command" in a] == [
        "terminals.command_queued",
        "terminals.command_queued",
        "terminals.command_acknowledged",
        "terminals.command_cancelled",
    ]


def test_queueing_a_command_is_checked(register, run):
    register("K1")
    with pytest.raises(PermissionDenied):
        run(GZ_OPS, fleet.queue_command, "K1", "restart")  # needs terminals.command
    with pytest.raises(ValidationError):
        run(COMMANDER, fleet.queue_command, "K1", "self_destruct")
    with pytest.raises(NotFound):
        run(staff("/TS/GD/SZ/", "terminals.command"), fleet.queue_command, "K1", "restart")
    run(GZ_OPS, service.decommission, "K1")
    with pytest.raises(Conflict):
        run(COMMANDER, fleet.queue_command, "K1", "restart")
    assert run(GZ_READER, fleet.list_commands) == []


# -- configuration ---------------------------------------------------------------------


def test_configuration_versions_overlay_by_scope(make_uow, engine, register, run):
    register("K1")
    register("K2", site="GZ-K2")
    v1 = run(ADMIN, fleet.publish_config, "all", {"volume": 5, "idle_s": 60})
    v2 = run(GZ_OPS, fleet.publish_config, "site", {"idle_s": 90}, target="GZTH-K1")
    v3 = run(GZ_OPS, fleet.publish_config, "terminal", {"banner": "欢迎"}, target="K1")
    assert [v1.version, v2.version, v3.version] == [1, 2, 3]
    k1 = run(GZ_READER, fleet.terminal_config, "K1")
    assert (k1.version, k1.config) == (3, {"volume": 5, "idle_s": 90, "banner": "欢迎"})
    k2 = run(GZ_READER, fleet.terminal_config, "K2")
    assert (k2.version, k2.config) == (1, {"volume": 5, "idle_s": 60})
    assert status(make_uow, "K1", report()).config_version == 3
    with make_uow() as uow:
        held = fleet.config_pull(uow.connection, "K1", 3)
        older = fleet.config_pull(uow.connection, "K1", 1)
        newer = fleet.config_pull(uow.connection, "K1", 7)  # a restored server
        uow.commit()
    assert (held.version, held.config) == (3, {})
    assert (older.version, older.config) == (3, k1.config)
    assert (newer.version, newer.config) == (3, k1.config)
    assert run(GZ_READER, service.get_terminal, "K1").config_version == 3
    assert [v.version for v in run(SZ_OPS, fleet.list_config_versions)] == [1]
    assert [a for a, _ in audit_actions(engine) if "config" in a] == [
        "terminals.config_published"
    ] * 3


@pytest.mark.parametrize(
    "config", [[1, 2], "x", {"x": float("nan")}, {"big": "x" * (fleet.CONFIG_MAX_BYTES + 1)}]
)
def test_a_bad_configuration_is_refused(config, engine, register, run):
    register("K1")
    with pytest.raises(ValidationError):
        run(GZ_OPS, fleet.publish_config, "terminal", config, target="K1")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(config_table)) == 0


def test_publishing_is_scoped(register, run):
    register("K1")
    with pytest.raises(Conflict):
        run(GZ_OPS, fleet.publish_config, "all", {"a": 1})  # operator-wide staff only
    with pytest.raises(NotFound):
        run(SZ_OPS, fleet.publish_config, "terminal", {"a": 1}, target="K1")
    with pytest.raises(ValidationError):
        run(GZ_OPS, fleet.publish_config, "region", {"a": 1})
    with pytest.raises(PermissionDenied):
        run(GZ_READER, fleet.publish_config, "terminal", {"a": 1}, target="K1")
    assert run(ADMIN, fleet.list_config_versions) == []


def test_terminal_info_reads_the_registry(make_uow, register):
    register("K1")
    with make_uow() as uow:
        info = terminal_info(uow.connection, "K1")
        assert info is not None and info.org_path.startswith(GZ)
        assert terminal_info(uow.connection, "nope") is None


def test_reports_answer_within_the_grace(make_uow, register, run, frozen_clock: FrozenClock):
    register("K1")
    status(make_uow, "K1", report())
    frozen_clock.advance(seconds=89)
    assert run(GZ_READER, fleet.device_state, "K1").online
    frozen_clock.advance(seconds=2)
    assert not run(GZ_READER, fleet.device_state, "K1").online
    assert utcnow() - run(GZ_READER, fleet.device_state, "K1").reported_at == timedelta(seconds=91)


def test_boxes_in_place_fullest_first_within_the_actors_subtree(
    make_uow, register, run, frozen_clock: FrozenClock
):
    """The collection round's list: each reporting terminal's box as last reported,
    fullest first, nearly full flagged; never-reported and other cities' boxes absent."""
    register("K1")
    register("K2", site="GZ-K2")
    register("K3", site="GZ-K2")  # never reports
    register("S1", site="SZ01", actor=SZ_OPS)
    status(make_uow, "K1", report(notes=[{"value": 10000, "count": 200}], capacity=1000))
    status(
        make_uow,
        "K2",
        report(box="B-7", notes=[{"value": 5000, "count": 900}, {"value": 2000, "count": 20}]),
    )
    status(make_uow, "S1", report(notes=[{"value": 10000, "count": 999}]))
    frozen_clock.advance(seconds=600)  # past the idle limit: K1 and K2 are not reporting
    status(make_uow, "K1", report(notes=[{"value": 10000, "count": 250}], capacity=1000))
    boxes = run(GZ_READER, fleet.boxes_in_place)
    assert [(b.terminal_id, b.box_id, b.count, b.amount) for b in boxes] == [
        ("K2", "B-7", 920, 900 * 5000 + 20 * 2000),
        ("K1", "BOX-1", 250, 250 * 10000),
    ]
    assert [(b.fill, b.nearly_full, b.online) for b in boxes] == [
        (0.92, True, False),
        (0.25, False, True),
    ]
    assert [b.terminal_id for b in run(GZ_READER, fleet.boxes_in_place, terminal_id="K1")] == ["K1"]
    assert [b.terminal_id for b in run(SZ_OPS, fleet.boxes_in_place)] == ["S1"]
