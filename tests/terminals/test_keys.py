"""Master keys: the gateway's read, rotation with a grace period, and what the codec's
order of checks makes of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select, update

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.errors import Conflict, PermissionDenied, ValidationError
from teleserve.core.settings import Mode, use_settings
from teleserve.gateway.catalog import Channel
from teleserve.gateway.checks import (
    Accepted,
    Refusal,
    SessionView,
    TerminalState,
    TerminalView,
    check_in_service,
    check_request,
)
from teleserve.gateway.frame import decode_frame
from teleserve.gateway.mac import derive_session_key
from teleserve.terminals import service
from teleserve.terminals.models import Terminal, TerminalMasterKey, TerminalStatus
from teleserve.terminals.schemas import TerminalAccess
from tests.gateway.helpers import request

from .conftest import ADMIN, GZ_OPS, audit_actions, events


def access(make_uow, terminal_id: str) -> TerminalAccess | None:
    with make_uow(SYSTEM, readonly=True) as uow:
        return service.terminal_access(uow, terminal_id)


def test_the_gateway_reads_the_registered_key(register, make_uow):
    created = register("K1")
    found = access(make_uow, "K1")
    assert found is not None
    assert found.master_keys == (bytes.fromhex(created.master_key),)
    assert (found.status, found.admitted, found.out_of_service) == (
        TerminalStatus.in_service,
        True,
        False,
    )
    assert found.org_path == created.terminal.org_path
    assert created.master_key not in repr(found)


def test_unknown_and_malformed_ids_read_as_none(register, make_uow):
    register("K1")
    assert access(make_uow, "K2") is None
    assert access(make_uow, "k1") is None  # ids are case-sensitive, like the header
    assert access(make_uow, "K1 ") is None
    assert access(make_uow, "") is None


@pytest.mark.parametrize(
    "actor",
    [GZ_OPS, ADMIN, Actor(ActorKind.terminal, "K1", "/", frozenset({"*"}))],
    ids=["terminal_ops", "admin", "terminal"],
)
def test_only_the_system_reads_keys(register, make_uow, actor):
    register("K1")
    with make_uow(actor) as uow, pytest.raises(PermissionDenied):
        service.terminal_access(uow, "K1")


@pytest.mark.parametrize(
    ("status", "admitted"),
    [
        (TerminalStatus.out_of_service, True),
        (TerminalStatus.disabled, False),
        (TerminalStatus.decommissioned, False),
    ],
)
def test_admission_follows_the_status(register, run, make_uow, status, admitted):
    register("K1")
    run(GZ_OPS, service.change_status, "K1", status)
    found = access(make_uow, "K1")
    assert found is not None
    assert (found.status, found.admitted) == (status, admitted)
    assert found.out_of_service is (status is TerminalStatus.out_of_service)


def test_decommissioning_ends_every_key(register, run, make_uow, engine):
    register("K1")
    run(GZ_OPS, service.rotate_master_key, "K1")
    run(GZ_OPS, service.decommission, "K1")
    assert access(make_uow, "K1").master_keys == ()
    assert run(GZ_OPS, service.get_terminal, "K1").key_check_value is None
    with pytest.raises(Conflict):
        run(GZ_OPS, service.rotate_master_key, "K1")
    with engine.connect() as conn:
        assert None not in conn.scalars(select(TerminalMasterKey.valid_until)).all()


def test_a_simulated_terminal_is_not_admitted_in_production(register, make_uow, settings):
    register("SIM-1", device_mode="sim")
    assert access(make_uow, "SIM-1").admitted is True
    use_settings(settings.model_copy(update={"mode": Mode.production}))
    try:
        assert access(make_uow, "SIM-1").admitted is False
    finally:
        use_settings(settings)


def test_rotation_keeps_the_previous_key_for_the_grace_period(
    register, run, make_uow, frozen_clock, engine
):
    old = bytes.fromhex(register("K1").master_key)
    rotated = run(GZ_OPS, service.rotate_master_key, "K1")
    new = bytes.fromhex(rotated.master_key)
    assert new != old and rotated.key_check_value == service.key_check_value(new)
    assert rotated.previous_key_valid_until == frozen_clock.now() + timedelta(hours=24)
    assert access(make_uow, "K1").master_keys == (new, old)  # current first
    out = run(GZ_OPS, service.get_terminal, "K1")
    assert out.key_check_value == rotated.key_check_value
    assert out.previous_key_valid_until == rotated.previous_key_valid_until
    frozen_clock.advance(hours=23, minutes=59)
    assert access(make_uow, "K1").master_keys == (new, old)
    frozen_clock.advance(minutes=1)  # the grace period ends: exactly now is over
    assert access(make_uow, "K1").master_keys == (new,)
    assert run(GZ_OPS, service.get_terminal, "K1").previous_key_valid_until is None
    action, detail = audit_actions(engine)[-1]
    assert action == "terminals.key_rotated"
    assert detail["key_check_value"] == rotated.key_check_value
    assert detail["previous_key_check_value"] == service.key_check_value(old)
    assert rotated.master_key not in str(detail)
    topic, payload = events(engine)[-1]
    assert topic == "terminals.key_rotated" and payload["terminal_id"] == "K1"


def test_rotation_grace_comes_from_the_settings_or_the_call(register, run, make_uow, settings):
    old = bytes.fromhex(register("K1").master_key)
    use_settings(settings.model_copy(update={"terminal_key_grace_hours": 2}))
    try:
        rotated = run(GZ_OPS, service.rotate_master_key, "K1")
    finally:
        use_settings(settings)
    assert access(make_uow, "K1").master_keys == (bytes.fromhex(rotated.master_key), old)
    # Grace 0: a leaked key ends at once (and with it the one still in its grace).
    now_only = run(GZ_OPS, service.rotate_master_key, "K1", grace_hours=0)
    assert now_only.previous_key_valid_until is None
    assert access(make_uow, "K1").master_keys == (bytes.fromhex(now_only.master_key),)


def test_a_second_rotation_ends_the_oldest_key_so_at_most_two_are_valid(register, run, make_uow):
    first = bytes.fromhex(register("K1").master_key)
    second = bytes.fromhex(run(GZ_OPS, service.rotate_master_key, "K1").master_key)
    third = bytes.fromhex(run(GZ_OPS, service.rotate_master_key, "K1").master_key)
    keys = access(make_uow, "K1").master_keys
    assert keys == (third, second) and first not in keys


@pytest.mark.parametrize("hours", [-1, 24 * 30 + 1])
def test_a_bad_grace_period_changes_nothing(register, run, make_uow, hours):
    key = bytes.fromhex(register("K1").master_key)
    with pytest.raises(ValidationError):
        run(GZ_OPS, service.rotate_master_key, "K1", grace_hours=hours)
    assert access(make_uow, "K1").master_keys == (key,)


def test_a_disabled_terminal_can_be_rekeyed_before_it_is_enabled(register, run, make_uow):
    register("K1")
    run(GZ_OPS, service.disable, "K1", "key leaked")
    rotated = run(GZ_OPS, service.rotate_master_key, "K1", grace_hours=0)
    run(GZ_OPS, service.enable, "K1")
    assert access(make_uow, "K1").master_keys == (bytes.fromhex(rotated.master_key),)


def test_a_key_row_moved_to_another_terminal_does_not_decrypt(register, make_uow, engine):
    register("K1")
    register("K2")
    with engine.begin() as conn:
        k1 = conn.scalar(select(Terminal.id).where(Terminal.terminal_id == "K1"))
        k2 = conn.scalar(select(Terminal.id).where(Terminal.terminal_id == "K2"))
        sealed = conn.scalar(
            select(TerminalMasterKey.key_enc).where(TerminalMasterKey.terminal_pk == k1)
        )
        conn.execute(
            update(TerminalMasterKey)
            .where(TerminalMasterKey.terminal_pk == k2)
            .values(key_enc=sealed)
        )
    with pytest.raises(InvalidTag):
        access(make_uow, "K2")


# -- with the codec's order of checks --------------------------------------------------

_STATES = {
    TerminalStatus.in_service: TerminalState.IN_SERVICE,
    TerminalStatus.out_of_service: TerminalState.OUT_OF_SERVICE,
}


def _view(found: TerminalAccess | None) -> TerminalView | None:
    """How the gateway slice maps the registry's answer onto ``checks.TerminalView``: a
    terminal that is not admitted is refused like a decommissioned one (10008)."""
    if found is None:
        return None
    state = _STATES.get(found.status, TerminalState.DECOMMISSIONED) if found.admitted else None
    return TerminalView(found.terminal_id, state or TerminalState.DECOMMISSIONED, found.master_keys)


def _check(
    make_uow,
    frozen_clock,
    terminal_id: str,
    key: bytes,
    serv_type: int = 9001,
    session: SessionView | None = None,
):
    now_ms = int(frozen_clock.now().timestamp() * 1000)
    wire = request(
        serv_type,
        {},
        terminal=terminal_id,
        key=key,
        timestamp_ms=now_ms,
        session_id=session.session_id if session else "00000000",
    )
    return check_request(
        decode_frame(wire),
        channel=Channel.MANAGEMENT if serv_type >= 9000 else Channel.BUSINESS,
        lookup=lambda tid: _view(access(make_uow, tid)),
        session=session,
        now_ms=now_ms,
    )


def test_the_codec_accepts_either_key_during_the_grace_and_answers_with_the_one_used(
    register, run, make_uow, frozen_clock
):
    old = bytes.fromhex(register("K1").master_key)
    new = bytes.fromhex(run(GZ_OPS, service.rotate_master_key, "K1").master_key)
    for key in (old, new):
        outcome = _check(make_uow, frozen_clock, "K1", key)
        assert isinstance(outcome, Accepted) and outcome.key == key
    frozen_clock.advance(hours=25)
    refused = _check(make_uow, frozen_clock, "K1", old)
    assert isinstance(refused, Refusal) and refused.code == "10002"
    assert isinstance(_check(make_uow, frozen_clock, "K1", new), Accepted)


@pytest.mark.parametrize(
    ("status", "code"),
    [(TerminalStatus.disabled, "10008"), (TerminalStatus.decommissioned, "10008")],
)
def test_the_codec_refuses_disabled_and_decommissioned_terminals(
    register, run, make_uow, frozen_clock, status, code
):
    key = bytes.fromhex(register("K1").master_key)
    run(GZ_OPS, service.change_status, "K1", status)
    refused = _check(make_uow, frozen_clock, "K1", key)
    assert isinstance(refused, Refusal) and refused.code == code


def test_the_codec_answers_10009_for_an_out_of_service_terminal(
    register, run, make_uow, frozen_clock
):
    key = bytes.fromhex(register("K1").master_key)
    run(GZ_OPS, service.put_out_of_service, "K1")
    report = _check(make_uow, frozen_clock, "K1", key)  # management: still accepted
    assert isinstance(report, Accepted) and check_in_service(report) is None
    sign_on = _check(make_uow, frozen_clock, "K1", key, serv_type=1)
    assert isinstance(sign_on, Accepted) and check_in_service(sign_on) is None
    session_key = derive_session_key(key, bytes(16), bytes(range(16)))
    expires = int(frozen_clock.now().timestamp() * 1000) + 86_400_000
    session = SessionView("K1", "a1b2c3d4", session_key, expires)
    login = _check(make_uow, frozen_clock, "K1", session_key, serv_type=1001, session=session)
    assert isinstance(login, Accepted)
    refused = check_in_service(login)
    assert refused is not None and refused.code == "10009"
