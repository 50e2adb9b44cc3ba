"""The status machine: every pair of statuses, checked against the transition table."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from teleserve.core.errors import Conflict, PermissionDenied, ValidationError
from teleserve.terminals import service
from teleserve.terminals.models import Terminal, TerminalStatus

from .conftest import GZ_OPS, GZ_READER, audit_actions, events

S = TerminalStatus
ALLOWED = {
    (S.in_service, S.out_of_service),
    (S.in_service, S.disabled),
    (S.in_service, S.decommissioned),
    (S.out_of_service, S.in_service),
    (S.out_of_service, S.disabled),
    (S.out_of_service, S.decommissioned),
    (S.disabled, S.in_service),
    (S.disabled, S.out_of_service),
    (S.disabled, S.decommissioned),
}


def _put(run, terminal_id: str, status: TerminalStatus) -> None:
    if status is not S.in_service:
        run(GZ_OPS, service.change_status, terminal_id, status, "set-up")


@pytest.mark.parametrize("source", list(S))
@pytest.mark.parametrize("target", list(S))
def test_every_transition_follows_the_table(register, run, engine, source, target):
    register("K1")
    _put(run, "K1", source)
    before = run(GZ_OPS, service.get_terminal, "K1")
    if (source, target) in ALLOWED:
        after = run(GZ_OPS, service.change_status, "K1", target, "because")
        assert after.status is target and after.status_reason == "because"
        topic, payload = events(engine)[-1]
        assert topic == "terminals.status_changed"
        assert (payload["previous_status"], payload["status"]) == (source.value, target.value)
        action, detail = audit_actions(engine)[-1]
        assert action == "terminals.status_changed"
        assert detail == {"terminal_id": "K1", "from": source, "to": target, "reason": "because"}
    else:
        with pytest.raises(Conflict) as caught:
            run(GZ_OPS, service.change_status, "K1", target, "because")
        assert caught.value.code == "terminal_status_conflict"
        assert run(GZ_OPS, service.get_terminal, "K1") == before


def test_the_named_verbs(register, run):
    register("K1")
    assert run(GZ_OPS, service.put_out_of_service, "K1").status is S.out_of_service
    assert run(GZ_OPS, service.disable, "K1", "suspected tampering").status is S.disabled
    enabled = run(GZ_OPS, service.enable, "K1")
    assert enabled.status is S.in_service and enabled.status_reason == ""
    assert run(GZ_OPS, service.decommission, "K1").status is S.decommissioned


def test_bad_input_changes_nothing(register, run, engine):
    register("K1")
    with pytest.raises(ValidationError):
        run(GZ_OPS, service.disable, "K1", "r" * 201)
    with pytest.raises(ValidationError):
        run(GZ_OPS, service.change_status, "K1", "broken")
    with pytest.raises(PermissionDenied):
        run(GZ_READER, service.disable, "K1")
    with engine.connect() as conn:
        assert conn.scalar(select(Terminal.status)) == "in_service"
    assert [action for action, _detail in audit_actions(engine)] == ["terminals.registered"]


def test_status_change_stamps_the_times(register, run, frozen_clock):
    created = register("K1").terminal
    frozen_clock.advance(minutes=5)
    changed = run(GZ_OPS, service.put_out_of_service, "K1", "cleaning")
    assert changed.status_changed_at == frozen_clock.now() == changed.updated_at
    assert changed.created_at == created.created_at
