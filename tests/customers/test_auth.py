"""Customer authentication (PROTOCOL.md "Customer authentication", docs/customer-auth.md).

Each attempt runs in its own unit of work which — like the gateway's — is rolled back
when the service raises, so these tests also prove that failures count anyway.
"""

import json

import pytest
from sqlalchemy import func, select

from teleserve.core.audit import AuditRecord, verify
from teleserve.core.errors import (
    AuthenticationFailed,
    Locked,
    PermissionDenied,
    RateLimited,
    ValidationError,
)
from teleserve.customers import service
from teleserve.customers.models import AuthState, CustomerSession, OneTimeCode
from teleserve.notify import service as notify

from .conftest import GZ_AGENT, GZ_HALL, KIOSK, PASSWORD

NUMBER = "13800138000"


def attempt(make_uow, call, *args, **kwargs):
    """Run one request like the gateway: commit on success, roll back on an error."""
    with make_uow(KIOSK) as uow:
        result = call(uow, *args, **kwargs)
        uow.commit()
        return result


def fails(make_uow, error, call, *args, **kwargs):
    with pytest.raises(error) as caught:
        attempt(make_uow, call, *args, **kwargs)
    return caught.value


def test_password_login(make_uow, new_line, engine, frozen_clock):
    line = new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD, "K0001")
    assert token.level == 1 and token.factors == ("password",)
    assert token.expires_in_s == 300 and token.customer_name == "张*"
    assert len(token.token) == 64 and int(token.token, 16) >= 0
    assert token.customer_id == line.customer_id
    with engine.connect() as conn:
        stored = conn.execute(select(CustomerSession)).one()
    assert token.token not in (stored.token_hash,)  # only the digest is kept
    with make_uow(KIOSK) as uow:
        auth = service.check_token(uow, token.token)
    assert (auth.customer_id, auth.service_number, auth.level) == (line.customer_id, NUMBER, 1)


def test_unknown_number_and_wrong_password_fail_alike(make_uow, new_line):
    new_line()
    wrong = fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "111333")
    unknown = fails(
        make_uow, AuthenticationFailed, service.login_with_password, "13900139000", PASSWORD
    )
    no_password = new_line(number="13700137000", password=None)
    unset = fails(
        make_uow,
        AuthenticationFailed,
        service.login_with_password,
        no_password.service_number,
        PASSWORD,
    )
    for other in (unknown, unset):
        assert (other.code, other.message, other.params) == (
            wrong.code,
            wrong.message,
            wrong.params,
        )
        assert other.render("zh-CN") == wrong.render("zh-CN")
    assert wrong.code == "customer_auth_failed"


def test_lockout_after_five_failures_unlocks_by_itself(make_uow, new_line, frozen_clock, engine):
    new_line()
    for _ in range(4):
        fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "111333")
    locked = fails(make_uow, Locked, service.login_with_password, NUMBER, "111333")
    assert locked.code == "customer_locked" and locked.params["retry_after_s"] == 900
    # Locked: even the right password is refused, and says how long to wait.
    frozen_clock.advance(minutes=10)
    again = fails(make_uow, Locked, service.login_with_password, NUMBER, PASSWORD)
    assert again.params["retry_after_s"] == 300
    fails(make_uow, Locked, service.login_with_otp, NUMBER, "123456")
    frozen_clock.advance(minutes=5)
    assert attempt(make_uow, service.login_with_password, NUMBER, PASSWORD).level == 1
    with engine.connect() as conn:
        state = conn.execute(select(AuthState)).one()
    assert (state.failures, state.locked_until) == (0, None)


def test_unknown_numbers_lock_too(make_uow, frozen_clock):
    for _ in range(4):
        fails(make_uow, AuthenticationFailed, service.login_with_password, "13900139000", "1")
    fails(make_uow, Locked, service.login_with_password, "13900139000", "1")
    fails(make_uow, Locked, service.send_otp, "13900139000")


def test_failures_expire_after_the_window_and_success_resets_them(make_uow, new_line, frozen_clock):
    new_line()
    for _ in range(4):
        fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "111333")
    frozen_clock.advance(minutes=16)
    fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "111333")
    for _ in range(3):
        fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "111333")
    attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    for _ in range(4):
        fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "111333")


def test_a_failure_counts_once_when_the_caller_commits(make_uow, new_line, engine, settings):
    new_line()
    for _ in range(2):
        with make_uow(KIOSK) as uow:
            with pytest.raises(AuthenticationFailed):
                service.login_with_password(uow, NUMBER, "111333")
            uow.commit()
    with engine.connect() as conn:
        assert conn.scalar(select(AuthState.failures)) == 2
        actions = conn.scalars(select(AuditRecord.action)).all()
    assert actions.count("customer.login_failed") == 2
    assert verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file).ok


def test_failures_and_lockouts_are_audited_masked(make_uow, new_line, engine, settings):
    line = new_line()
    for _ in range(5):
        fails(make_uow, (AuthenticationFailed, Locked), service.login_with_password, NUMBER, "1")
    fails(make_uow, AuthenticationFailed, service.login_with_password, "13900139000", "1")
    with engine.connect() as conn:
        records = conn.execute(select(AuditRecord).order_by(AuditRecord.id)).all()
    failed = [r for r in records if r.action == "customer.login_failed"]
    assert len(failed) == 6
    assert [r.action for r in records].count("customer.locked") == 1
    for record in records:
        assert NUMBER not in record.detail and "13900139000" not in record.detail
        assert "13900139000" not in record.subject_id
    assert json.loads(failed[0].detail)["service_number"] == "138****8000"
    assert failed[0].subject_id == line.customer_id
    assert failed[-1].subject_type == "service_number"
    assert verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file).ok


def test_per_terminal_throttle(make_uow, new_line, settings):
    new_line()
    settings.customer_auth_per_terminal_per_minute = 3
    for _ in range(2):
        fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "1", "K1")
    attempt(make_uow, service.login_with_password, NUMBER, PASSWORD, "K1")
    limited = fails(make_uow, RateLimited, service.login_with_password, NUMBER, PASSWORD, "K1")
    assert limited.code == "customer_rate_limited" and 1 <= limited.params["retry_after_s"] <= 60
    attempt(make_uow, service.login_with_password, NUMBER, PASSWORD, "K2")


def test_global_failure_throttle_stops_spraying(make_uow, new_line, settings):
    new_line()
    settings.customer_auth_global_per_minute = 3
    for i in range(3):
        fails(
            make_uow,
            AuthenticationFailed,
            service.login_with_password,
            f"1390013900{i}",
            PASSWORD,
            f"K{i}",
        )
    limited = fails(make_uow, RateLimited, service.login_with_password, NUMBER, PASSWORD, "K9")
    assert limited.code == "customer_rate_limited"


def test_malformed_input_is_refused_before_anything_counts(make_uow, new_line, engine):
    new_line()
    for args in [("12", PASSWORD), (NUMBER, ""), (NUMBER, None), (NUMBER, "x" * 65)]:
        fails(make_uow, ValidationError, service.login_with_password, *args)
    fails(make_uow, ValidationError, service.login_with_password, NUMBER, PASSWORD, "")
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(AuthState)) == 0


# -- one-time codes -----------------------------------------------------------------


def test_otp_login(make_uow, new_line, sent_codes, frozen_clock):
    new_line()
    sent = attempt(make_uow, service.send_otp, NUMBER, "K0001")
    assert sent.expires_in_s == 300
    [(number, code)] = sent_codes
    assert number == NUMBER and len(code) == 6 and code.isdigit()
    token = attempt(make_uow, service.login_with_otp, NUMBER, code, "K0001")
    assert token.level == 1 and token.factors == ("otp",)
    # A code works once.
    fails(make_uow, AuthenticationFailed, service.login_with_otp, NUMBER, code)


def test_otp_for_an_unknown_number_looks_the_same(
    make_uow, new_line, sent_codes, engine, frozen_clock
):
    new_line()
    known = attempt(make_uow, service.send_otp, NUMBER)
    unknown = attempt(make_uow, service.send_otp, "13900139000")
    assert known == unknown
    assert [n for n, _ in sent_codes] == [NUMBER]  # no SMS to a number nobody owns
    # ...but its cooldown applies all the same.
    cooldown = fails(make_uow, RateLimited, service.send_otp, "13900139000")
    assert cooldown.params["retry_after_s"] == 60
    failed = fails(make_uow, AuthenticationFailed, service.login_with_otp, "13900139000", "000000")
    assert failed.code == "customer_auth_failed"
    with engine.connect() as conn:
        hashes = conn.scalars(select(OneTimeCode.code_hash).order_by(OneTimeCode.created_at)).all()
    assert len(hashes) == 2 and sent_codes[0][1] not in hashes[0]


def test_otp_cooldown(make_uow, new_line, sent_codes, frozen_clock):
    new_line()
    attempt(make_uow, service.send_otp, NUMBER)
    frozen_clock.advance(seconds=45)
    limited = fails(make_uow, RateLimited, service.send_otp, NUMBER)
    assert limited.params["retry_after_s"] == 15
    frozen_clock.advance(seconds=15)
    attempt(make_uow, service.send_otp, NUMBER)
    # Only the latest code counts.
    (_, first), (_, second) = sent_codes
    if first != second:
        fails(make_uow, AuthenticationFailed, service.login_with_otp, NUMBER, first)
    attempt(make_uow, service.login_with_otp, NUMBER, second)


def test_otp_daily_cap_per_number(make_uow, new_line, sent_codes, frozen_clock, settings):
    new_line()
    settings.otp_daily_cap_per_number = 3
    for _ in range(3):
        attempt(make_uow, service.send_otp, NUMBER)
        frozen_clock.advance(seconds=61)
    capped = fails(make_uow, RateLimited, service.send_otp, NUMBER)
    # The frozen clock is 10:00 in Shanghai (+3 min): the cap lifts at midnight there.
    assert capped.params["retry_after_s"] == 14 * 3600 - 3 * 61
    frozen_clock.advance(hours=14)
    attempt(make_uow, service.send_otp, NUMBER)


def test_otp_daily_cap_per_terminal(make_uow, new_line, sent_codes, frozen_clock, settings):
    settings.otp_daily_cap_per_terminal = 2
    attempt(make_uow, service.send_otp, "13900139001", "K1")
    attempt(make_uow, service.send_otp, "13900139002", "K1")
    fails(make_uow, RateLimited, service.send_otp, "13900139003", "K1")
    attempt(make_uow, service.send_otp, "13900139003", "K2")


def test_otp_expires(make_uow, new_line, sent_codes, frozen_clock):
    new_line()
    attempt(make_uow, service.send_otp, NUMBER)
    frozen_clock.advance(seconds=300)
    fails(make_uow, AuthenticationFailed, service.login_with_otp, NUMBER, sent_codes[0][1])


def test_otp_has_three_tries(make_uow, new_line, sent_codes, frozen_clock):
    new_line()
    attempt(make_uow, service.send_otp, NUMBER)
    code = sent_codes[0][1]
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(3):
        fails(make_uow, AuthenticationFailed, service.login_with_otp, NUMBER, wrong)
    fails(make_uow, AuthenticationFailed, service.login_with_otp, NUMBER, code)


def test_otp_is_queued_through_notify(make_uow, new_line, frozen_clock):
    line = new_line()
    with make_uow(KIOSK) as uow:
        service.send_otp(uow, NUMBER)
        uow.commit()
    with make_uow() as uow:
        [message] = notify.list_messages(uow, template="otp")
    assert message.channel == "sms" and message.recipient == "138****8000"
    assert (message.customer_id, message.org_path) == (line.customer_id, GZ_HALL)


def test_otp_for_a_fixed_line_goes_to_the_owner_mobile(make_uow, new_line, sent_codes):
    line = new_line()  # contact mobile 13800138000
    with make_uow(GZ_AGENT) as uow:
        service.link_service_number(uow, "02088889999", line.customer_id, GZ_HALL)
        uow.commit()
    attempt(make_uow, service.send_otp, "02088889999")
    assert sent_codes[0][0] == NUMBER
    token = attempt(make_uow, service.login_with_otp, "02088889999", sent_codes[0][1])
    assert token.service_number == "02088889999"


# -- second factor, tokens -------------------------------------------------------------


def test_second_factor_must_differ(make_uow, new_line, sent_codes, frozen_clock):
    new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    with make_uow(KIOSK) as uow, pytest.raises(PermissionDenied) as weak:
        service.check_token(uow, token.token, level=2)
    assert weak.value.code == "customer_level_required"
    same = fails(
        make_uow, ValidationError, service.add_factor, token.token, "password", secret=PASSWORD
    )
    assert same.code == "same_factor"
    attempt(make_uow, service.send_otp, NUMBER)
    code = sent_codes[-1][1]
    stronger = attempt(make_uow, service.add_factor, token.token, "otp", secret=code)
    assert stronger.level == 2 and stronger.factors == ("password", "otp")
    assert stronger.token == token.token
    with make_uow(KIOSK) as uow:
        assert service.check_token(uow, token.token, level=2).level == 2


def test_a_wrong_second_factor_counts_as_a_failure(make_uow, new_line, sent_codes, engine):
    new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    attempt(make_uow, service.send_otp, NUMBER)
    fails(make_uow, AuthenticationFailed, service.add_factor, token.token, "otp", secret="1")
    with engine.connect() as conn:
        assert conn.scalar(select(AuthState.failures)) == 1
    with make_uow(KIOSK) as uow:
        assert service.check_token(uow, token.token).level == 1


def test_id_card_factor(make_uow, new_line, frozen_clock):
    line = new_line()
    card = dict(id_number=line.id_number, id_name="张三", face_match_score=80)
    token = attempt(make_uow, service.login_with_id_card, NUMBER, **card)
    assert token.factors == ("id_card",)
    for bad in (
        {"face_match_score": 79},
        {"id_name": "李四"},
        {"id_number": line.id_number[:-4] + "0000"},
    ):
        fails(make_uow, AuthenticationFailed, service.login_with_id_card, NUMBER, **{**card, **bad})
    fails(
        make_uow,
        ValidationError,
        service.login_with_id_card,
        NUMBER,
        **{**card, "face_match_score": 101},
    )
    level2 = attempt(make_uow, service.add_factor, token.token, "password", secret=PASSWORD)
    assert level2.level == 2 and level2.factors == ("id_card", "password")


def test_tokens_expire_after_idle_time_refreshed_on_use(make_uow, new_line, frozen_clock):
    new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    for _ in range(3):
        frozen_clock.advance(seconds=299)
        attempt(make_uow, service.check_token, token.token)
    frozen_clock.advance(seconds=300)
    expired = fails(make_uow, AuthenticationFailed, service.check_token, token.token)
    assert expired.code == "customer_session_expired"
    fails(make_uow, AuthenticationFailed, service.check_token, "not a token")
    fails(make_uow, AuthenticationFailed, service.check_token, "0" * 64)


def test_logout(make_uow, new_line, engine):
    new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    attempt(make_uow, service.logout, token.token)
    fails(make_uow, AuthenticationFailed, service.check_token, token.token)
    attempt(make_uow, service.logout, token.token)  # again: quietly nothing
    attempt(make_uow, service.logout, "0" * 64)
    with engine.connect() as conn:
        actions = conn.scalars(select(AuditRecord.action)).all()
    assert actions.count("customer.logout") == 1


# -- service passwords -----------------------------------------------------------------


def test_weak_passwords_are_refused_and_change_nothing(make_uow, new_line, engine):
    line = new_line(password=None)
    for weak in ("666666", "123456", "138000", "900307", "19900307"[2:], line.id_number[-6:]):
        with make_uow(GZ_AGENT) as uow:
            with pytest.raises(ValidationError):
                service.set_service_password(uow, NUMBER, line.customer_id, GZ_HALL, weak)
            uow.commit()
    fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "666666")


def test_password_reset_by_staff_unlocks_and_ends_sessions(make_uow, new_line, frozen_clock):
    line = new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    for _ in range(5):
        fails(make_uow, (AuthenticationFailed, Locked), service.login_with_password, NUMBER, "1")
    with make_uow(GZ_AGENT) as uow:
        service.set_service_password(uow, NUMBER, line.customer_id, GZ_HALL, "592817")
        uow.commit()
    fails(make_uow, AuthenticationFailed, service.check_token, token.token)
    attempt(make_uow, service.login_with_password, NUMBER, "592817")


def test_customer_changes_own_password(make_uow, new_line, frozen_clock):
    new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    other = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    fails(
        make_uow, ValidationError, service.change_service_password, token.token, PASSWORD, "111111"
    )
    fails(
        make_uow, ValidationError, service.change_service_password, token.token, PASSWORD, PASSWORD
    )
    fails(
        make_uow,
        AuthenticationFailed,
        service.change_service_password,
        token.token,
        "592817",
        "592817"[::-1],
    )
    attempt(make_uow, service.change_service_password, token.token, PASSWORD, "592817")
    attempt(make_uow, service.check_token, token.token)  # this session goes on
    fails(make_uow, AuthenticationFailed, service.check_token, other.token)  # others end
    attempt(make_uow, service.login_with_password, NUMBER, "592817")
    fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, PASSWORD)


def test_unlinked_number_forgets_its_password(make_uow, new_line, frozen_clock):
    line = new_line()
    token = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    with make_uow(GZ_AGENT) as uow:
        service.unlink_service_number(uow, NUMBER)
        uow.commit()
    fails(make_uow, AuthenticationFailed, service.check_token, token.token)
    fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, PASSWORD)
    # A recycled number goes to its next owner without the old password.
    with make_uow(GZ_AGENT) as uow:
        service.link_service_number(uow, NUMBER, line.customer_id, GZ_HALL)
        uow.commit()
    fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, PASSWORD)


def test_a_number_belongs_to_one_customer(make_uow, new_line):
    new_line()
    other = new_line(number="13700137000", name="李四")
    from teleserve.core.errors import Conflict

    with make_uow(GZ_AGENT) as uow, pytest.raises(Conflict):
        service.link_service_number(uow, NUMBER, other.customer_id, GZ_HALL)
    with make_uow(GZ_AGENT) as uow, pytest.raises(ValidationError):
        service.link_service_number(uow, "13600136000", other.customer_id, "/TS/GD/SZ/")


# -- durability of failures ------------------------------------------------------------


def test_a_failure_in_a_rolled_back_savepoint_still_counts(make_uow, new_line, engine, settings):
    """The gateway's SQLite group commit runs each request in a savepoint of a shared
    transaction: a failed login rolls its savepoint back, the batch commits."""
    new_line()
    with make_uow(KIOSK) as uow:
        for _ in range(2):
            savepoint = uow.session.begin_nested()
            with pytest.raises(AuthenticationFailed):
                service.login_with_password(uow, NUMBER, "111333")
            savepoint.rollback()
        uow.commit()
    with engine.connect() as conn:
        assert conn.scalar(select(AuthState.failures)) == 2
        actions = conn.scalars(select(AuditRecord.action)).all()
    assert actions.count("customer.login_failed") == 2  # recorded, and only once each
    assert verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file).ok


def test_purge_forgets_only_what_no_longer_matters(make_uow, new_line, sent_codes, frozen_clock):
    new_line()
    attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    attempt(make_uow, service.send_otp, NUMBER)
    fails(make_uow, AuthenticationFailed, service.login_with_password, NUMBER, "111333")
    with make_uow() as uow:
        assert service.purge_expired(uow) == 0
    frozen_clock.advance(days=8)
    fresh = attempt(make_uow, service.login_with_password, NUMBER, PASSWORD)
    with make_uow() as uow:
        # The old session, code and failure, and the state row that remembers nothing.
        assert service.purge_expired(uow) == 4
        uow.commit()
    attempt(make_uow, service.check_token, fresh.token)
