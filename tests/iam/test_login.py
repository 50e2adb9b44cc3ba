from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from teleserve.core.audit import AuditRecord
from teleserve.core.errors import AuthenticationFailed, Locked, PermissionDenied, ValidationError
from teleserve.iam import passwords, totp
from teleserve.iam import service as iam
from teleserve.iam.models import StaffUser
from teleserve.iam.roles import ROLES

from .conftest import PASSWORD, staff


def _actions(engine, subject_id: str | None = None) -> list[str]:
    query = select(AuditRecord.action).order_by(AuditRecord.id)
    if subject_id is not None:
        query = query.where(AuditRecord.subject_id == subject_id)
    with engine.connect() as conn:
        return list(conn.scalars(query))


def _login(make_uow, username, password, code=None):
    """One login in its own unit of work, as the web layer does it."""
    with make_uow() as uow:
        actor = iam.authenticate(uow, username, password, code)
        uow.commit()
    return actor


def _fail(make_uow, username, password, code=None) -> Exception:
    with pytest.raises((AuthenticationFailed, Locked)) as caught:
        _login(make_uow, username, password, code)
    return caught.value


def test_login_success_returns_staff_actor(make_uow, make_user, tree, engine, frozen_clock):
    user = make_user("alice", "GZTH", ["agent"])
    actor = _login(make_uow, " Alice ", PASSWORD)
    assert actor.id == user.id and actor.org_path == tree["GZTH"].path
    assert actor.permissions == ROLES["agent"]
    with engine.connect() as conn:
        last = conn.scalar(select(StaffUser.last_login_at).where(StaffUser.id == user.id))
    assert last == frozen_clock.now()
    assert _actions(engine, user.id)[-1] == "iam.login.succeeded"


def test_unknown_user_and_wrong_password_look_the_same(make_uow, make_user, engine):
    make_user("bob", "GZ", ["agent"])
    unknown = _fail(make_uow, "nobody", PASSWORD)
    wrong = _fail(make_uow, "bob", "not the password")
    empty = _fail(make_uow, "", "")
    for error in (unknown, wrong, empty):
        assert type(error) is AuthenticationFailed
        assert error.code == "invalid_credentials"
        assert error.render("en") == unknown.render("en")
        assert error.render("zh-CN") == "用户名或密码错误"
    # both failures were recorded although the caller rolled back
    assert _actions(engine).count("iam.login.failed") == 3


def test_lockout_after_five_failures_then_automatic_unlock(
    make_uow, make_user, engine, frozen_clock, settings
):
    user = make_user("carol", "GZ", ["agent"])
    for _ in range(settings.staff_login_max_failures - 1):
        error = _fail(make_uow, "carol", "bad password")
        assert error.code == "invalid_credentials"
    fifth = _fail(make_uow, "carol", "bad password")
    assert isinstance(fifth, Locked) and fifth.status == 423
    until = frozen_clock.now() + timedelta(minutes=settings.staff_lockout_minutes)
    assert fifth.params["until_iso"] == until.isoformat()
    assert fifth.params["until"] == "2026-11-25 10:15:00"  # Asia/Shanghai
    assert "2026-11-25 10:15:00" in fifth.render("zh-CN")
    # locked: even the right password is refused, without checking it
    frozen_clock.advance(minutes=14, seconds=59)
    assert isinstance(_fail(make_uow, "carol", PASSWORD), Locked)
    # unlocks by itself
    frozen_clock.advance(seconds=1)
    assert _login(make_uow, "carol", PASSWORD).id == user.id
    actions = _actions(engine, user.id)
    assert actions.count("iam.login.failed") == 5
    assert actions.count("iam.login.locked") == 1
    assert actions.count("iam.login.refused") == 1
    assert actions[-1] == "iam.login.succeeded"


def test_success_resets_the_failure_count(make_uow, make_user, frozen_clock):
    make_user("dan", "GZ", ["agent"])
    for _ in range(4):
        _fail(make_uow, "dan", "bad password")
    _login(make_uow, "dan", PASSWORD)
    for _ in range(4):
        assert type(_fail(make_uow, "dan", "bad password")) is AuthenticationFailed


def test_failures_far_apart_do_not_add_up(make_uow, make_user, frozen_clock):
    make_user("eve", "GZ", ["agent"])
    for _ in range(4):
        _fail(make_uow, "eve", "bad password")
    frozen_clock.advance(minutes=16)
    for _ in range(4):
        assert type(_fail(make_uow, "eve", "bad password")) is AuthenticationFailed
    assert isinstance(_fail(make_uow, "eve", "bad password"), Locked)


def test_admin_unlocks_early(make_uow, make_user, tree, frozen_clock):
    user = make_user("fay", "GZ", ["agent"])
    for _ in range(5):
        _fail(make_uow, "fay", "bad password")
    with make_uow() as uow:
        assert iam.get_user(uow, user.id).locked_until is not None
        iam.unlock_user(uow, user.id)
        uow.commit()
    assert _login(make_uow, "fay", PASSWORD).id == user.id


def test_inactive_user_refused_generically(make_uow, make_user):
    user = make_user("gus", "GZ", ["agent"])
    with make_uow() as uow:
        iam.deactivate_user(uow, user.id)
        uow.commit()
    assert _fail(make_uow, "gus", PASSWORD).code == "invalid_credentials"


def test_outdated_hash_is_upgraded_at_login(make_uow, make_user, engine):
    user = make_user("hal", "GZ", ["agent"])
    stronger = passwords.Argon2Params(2, 16, 1)
    previous = passwords.use_params(stronger)
    try:
        _login(make_uow, "hal", PASSWORD)
        with engine.connect() as conn:
            stored = conn.scalar(select(StaffUser.password_hash).where(StaffUser.id == user.id))
        assert "m=16,t=2,p=1" in stored and not passwords.needs_rehash(stored)
    finally:
        passwords.use_params(previous)


# -- MFA -------------------------------------------------------------------------------


def _enrol(make_uow, user_id: str, frozen_clock) -> str:
    """Enrol through the enrolment-only actor; returns the secret."""
    with make_uow() as uow:
        actor = iam.actor_for_user(uow, user_id)
    with make_uow(actor) as uow:
        enrolment = iam.begin_mfa_enrolment(uow, user_id)
        uow.commit()
    assert enrolment.provisioning_uri.startswith("otpauth://totp/Teleserve:")
    code = totp.code_for_step(enrolment.secret, totp.step_at(frozen_clock.now()))
    with make_uow(actor) as uow:
        iam.confirm_mfa_enrolment(uow, user_id, code)
        uow.commit()
    return enrolment.secret


def _code(secret: str, frozen_clock, steps: int = 0) -> str:
    return totp.code_for_step(secret, totp.step_at(frozen_clock.now()) + steps)


@pytest.mark.parametrize("role", ["admin", "org_admin", "finance", "auditor"])
def test_mfa_roles_get_only_enrolment_until_enrolled(make_uow, make_user, frozen_clock, role):
    user = make_user(f"user-{role.replace('_', '-')}", "GZ", [role])
    assert user.mfa_required
    actor = _login(make_uow, user.username, PASSWORD)
    assert iam.is_enrolment_only(actor)
    assert not actor.can(next(iter(ROLES["agent"])))
    secret = _enrol(make_uow, user.id, frozen_clock)
    # the password alone no longer logs in
    missing = _fail(make_uow, user.username, PASSWORD)
    assert missing.code == "mfa_required"
    frozen_clock.advance(seconds=30)
    full = _login(make_uow, user.username, PASSWORD, _code(secret, frozen_clock))
    assert not iam.is_enrolment_only(full)
    assert full.permissions == ROLES[role]
    if role == "admin":
        assert full.org_path == "/"


def test_roles_without_mfa_requirement_log_in_with_password(make_uow, make_user):
    for role in ("agent", "cashier", "backoffice", "terminal_ops", "manager"):
        make_user(f"u-{role.replace('_', '-')}", "GZ", [role])
        actor = _login(make_uow, f"u-{role.replace('_', '-')}", PASSWORD)
        assert actor.permissions == ROLES[role]


def test_totp_replay_is_refused(make_uow, make_user, frozen_clock, engine):
    user = make_user("ian", "GZ", ["admin"])
    secret = _enrol(make_uow, user.id, frozen_clock)
    frozen_clock.advance(seconds=30)
    code = _code(secret, frozen_clock)
    _login(make_uow, "ian", PASSWORD, code)
    replay = _fail(make_uow, "ian", PASSWORD, code)
    assert replay.code == "mfa_invalid"
    # an older code (previous step, inside the window) is refused too
    older = _code(secret, frozen_clock, -1)
    assert _fail(make_uow, "ian", PASSWORD, older).code == "mfa_invalid"
    frozen_clock.advance(seconds=30)
    assert _login(make_uow, "ian", PASSWORD, _code(secret, frozen_clock)).id == user.id
    reasons = [a for a in _actions(engine, user.id) if a == "iam.login.failed"]
    assert len(reasons) == 2


def test_enrolment_code_cannot_be_reused_to_log_in(make_uow, make_user, frozen_clock):
    user = make_user("jon", "GZ", ["finance"])
    secret = _enrol(make_uow, user.id, frozen_clock)
    assert _fail(make_uow, "jon", PASSWORD, _code(secret, frozen_clock)).code == "mfa_invalid"


def test_totp_window_is_one_step_either_side(make_uow, make_user, frozen_clock):
    user = make_user("kim", "GZ", ["auditor"])
    secret = _enrol(make_uow, user.id, frozen_clock)
    frozen_clock.advance(minutes=5)
    # two steps early or late: refused
    assert _fail(make_uow, "kim", PASSWORD, _code(secret, frozen_clock, -2)).code == "mfa_invalid"
    assert _fail(make_uow, "kim", PASSWORD, _code(secret, frozen_clock, 2)).code == "mfa_invalid"
    # one step behind (slow phone clock): accepted
    assert _login(make_uow, "kim", PASSWORD, _code(secret, frozen_clock, -1)).id == user.id
    frozen_clock.advance(minutes=1)
    # one step ahead: accepted
    assert _login(make_uow, "kim", PASSWORD, _code(secret, frozen_clock, 1)).id == user.id
    # and that burnt the current step too: its code would be older than the last used
    assert _fail(make_uow, "kim", PASSWORD, _code(secret, frozen_clock)).code == "mfa_invalid"


def test_wrong_totp_codes_count_towards_lockout(make_uow, make_user, frozen_clock):
    user = make_user("lou", "GZ", ["admin"])
    secret = _enrol(make_uow, user.id, frozen_clock)
    for _ in range(4):
        assert _fail(make_uow, "lou", PASSWORD, "000000").code == "mfa_invalid"
    assert isinstance(_fail(make_uow, "lou", PASSWORD, "not-a-code"), Locked)
    frozen_clock.advance(minutes=1)
    assert isinstance(_fail(make_uow, "lou", PASSWORD, _code(secret, frozen_clock)), Locked)


def test_wrong_password_with_right_code_is_a_plain_failure(make_uow, make_user, frozen_clock):
    user = make_user("max", "GZ", ["admin"])
    secret = _enrol(make_uow, user.id, frozen_clock)
    frozen_clock.advance(seconds=30)
    error = _fail(make_uow, "max", "wrong password", _code(secret, frozen_clock))
    assert error.code == "invalid_credentials"


def test_secret_is_stored_encrypted(make_uow, make_user, frozen_clock, engine):
    user = make_user("ned", "GZ", ["admin"])
    secret = _enrol(make_uow, user.id, frozen_clock)
    with engine.connect() as conn:
        sealed = conn.scalar(select(StaffUser.mfa_secret_enc).where(StaffUser.id == user.id))
    assert sealed and secret not in sealed


def test_confirmation_needs_the_right_code(make_uow, make_user, frozen_clock):
    user = make_user("ola", "GZ", ["admin"])
    with make_uow() as uow:
        actor = iam.actor_for_user(uow, user.id)
    with make_uow(actor) as uow:
        with pytest.raises(ValidationError):
            iam.confirm_mfa_enrolment(uow, user.id, "123456")  # nothing pending
        enrolment = iam.begin_mfa_enrolment(uow, user.id)
        stale = _code(enrolment.secret, frozen_clock, -2)
        with pytest.raises(ValidationError):
            iam.confirm_mfa_enrolment(uow, user.id, stale)
        with pytest.raises(ValidationError):
            iam.confirm_mfa_enrolment(uow, user.id, "12345")


def test_only_the_user_enrols_and_admin_can_reset(make_uow, make_user, tree, frozen_clock):
    user = make_user("pat", "GZ", ["finance"])
    city_admin = staff(tree["GZ"].path, *ROLES["org_admin"], user_id="boss")
    with make_uow(city_admin) as uow, pytest.raises(PermissionDenied):
        iam.begin_mfa_enrolment(uow, user.id)
    secret = _enrol(make_uow, user.id, frozen_clock)
    with make_uow(city_admin) as uow:
        iam.reset_mfa(uow, user.id)
        uow.commit()
    # after a reset the password gives the enrolment-only actor again
    assert iam.is_enrolment_only(_login(make_uow, "pat", PASSWORD))
    assert secret  # the old authenticator is gone with the reset


def test_enrolment_ends_existing_sessions(make_uow, make_user, frozen_clock):
    user = make_user("quinn", "GZ", ["org_admin"])
    with make_uow() as uow:
        stamp = iam.current_session_stamp(uow, user.id)
    _enrol(make_uow, user.id, frozen_clock)
    with make_uow() as uow, pytest.raises(AuthenticationFailed):
        iam.actor_for_user(uow, user.id, stamp=stamp)


def test_voluntary_mfa_is_enforced_too(make_uow, make_user, frozen_clock):
    user = make_user("ray", "GZ", ["agent"])
    secret = _enrol(make_uow, user.id, frozen_clock)
    assert _fail(make_uow, "ray", PASSWORD).code == "mfa_required"
    frozen_clock.advance(seconds=30)
    assert _login(make_uow, "ray", PASSWORD, _code(secret, frozen_clock)).can("customers.write")


def test_over_long_username_matches_nobody(make_uow, make_user):
    long_name = "u" * 64
    make_user(long_name, "GZ", ["agent"])
    assert _login(make_uow, long_name, PASSWORD)
    assert _fail(make_uow, long_name + "z", PASSWORD).code == "invalid_credentials"
