"""Logging in (password, then TOTP for MFA roles), lockout, CSRF, session lifetimes and
authenticator enrolment, through the console's HTTP interface."""

from __future__ import annotations

from teleserve.core.uow import UnitOfWork
from teleserve.demo.seed import DEMO_PASSWORD
from teleserve.iam import service as iam

from .conftest import csrf_of, totp_now


def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get("/console/customers?q=x", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=/console/customers%3Fq%3Dx"
    # htmx requests are redirected by header, not by a 303 htmx would follow in place
    response = client.get("/console/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert response.headers["HX-Redirect"].startswith("/console/login")
    assert client.get("/", follow_redirects=False).headers["location"] == "/console/"
    # the shell's own files and the vendored libraries are served
    for path in ("console.css", "console.js", "vendor/htmx/htmx.min.js"):
        assert client.get(f"/static/{path}").status_code == 200, path


def test_agent_logs_in_with_a_password_and_lands_on_the_next_page(client, login):
    token = csrf_of(client)
    response = client.post(
        "/console/login",
        data={
            "username": "gz01.agent",
            "password": DEMO_PASSWORD,
            "csrf_token": token,
            "next": "/console/customers",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/console/customers"
    page = client.get("/console/")
    assert page.status_code == 200
    assert "gz01.agent" in page.text
    # a next that leaves the console is ignored (no open redirect)
    client.cookies.clear()
    token = csrf_of(client)
    response = client.post(
        "/console/login",
        data={
            "username": "gz01.agent",
            "password": DEMO_PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/console/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/console/"


def test_wrong_password_is_refused_in_the_users_language(client, login):
    response = login("gz01.agent", "wrong password")
    assert response.status_code == 401
    assert 'lang="zh-CN"' in response.text
    assert "用户名或密码错误" in response.text
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_mfa_login_takes_a_code_after_the_password(client, login, frozen_clock):
    first = login("admin")
    assert first.status_code == 401
    assert 'name="code"' in first.text  # the code step, password not echoed back
    assert DEMO_PASSWORD not in first.text
    # htmx: only the step's fragment comes back (200, so htmx swaps it in)
    partial = login("admin", **{"HX-Request": "true"})
    assert partial.status_code == 200
    assert partial.text.lstrip().startswith('<div id="login-step">')
    assert 'name="code"' in partial.text
    wrong = login("admin", code="000000" if totp_now(frozen_clock) != "000000" else "111111")
    assert wrong.status_code == 401 and 'name="code"' in wrong.text
    ok = login("admin", code=totp_now(frozen_clock))
    assert ok.status_code == 303 and ok.headers["location"] == "/console/"
    home = client.get("/console/")
    assert home.status_code == 200 and "admin" in home.text
    # the same code never works twice
    client.cookies.clear()
    assert login("admin", code=totp_now(frozen_clock)).status_code == 401


def test_lockout_is_shown_with_the_time_it_lifts(client, login):
    for _ in range(4):
        assert login("gz01.cashier", "wrong password").status_code == 401
    locked = login("gz01.cashier", "wrong password")
    assert locked.status_code == 423
    # 02:00 UTC frozen + 15 minutes, shown in Asia/Shanghai time
    assert "登录失败次数过多，请于 2026-11-25 10:15:00 之后再试" in locked.text
    # while locked even the right password is refused, with the same explanation
    again = login("gz01.cashier")
    assert again.status_code == 423 and "2026-11-25 10:15:00" in again.text


def test_logins_from_one_address_are_throttled(client, login):
    for _ in range(30):
        login("nobody-here", "x")
    response = login("gz01.agent")
    assert response.status_code == 429


def test_every_unsafe_request_needs_the_csrf_token(client, login):
    # the login form itself (login CSRF)
    response = client.post(
        "/console/login", data={"username": "gz01.agent", "password": DEMO_PASSWORD}
    )
    assert response.status_code == 403
    assert "表单已过期" in response.text
    assert login("gz01.agent").status_code == 303
    # a logged-in session: no token, a wrong token -> 403 and nothing happens
    assert client.post("/console/logout", follow_redirects=False).status_code == 403
    response = client.post("/console/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert response.status_code == 403
    assert client.get("/console/", follow_redirects=False).status_code == 200  # still in
    # the header htmx sends
    token = csrf_of(client, "/console/")
    response = client.post(
        "/console/logout", headers={"X-CSRF-Token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert client.get("/console/", follow_redirects=False).status_code == 303  # logged out


def test_idle_and_old_sessions_end(client, login, frozen_clock):
    assert login("gz01.agent").status_code == 303
    frozen_clock.advance(minutes=29)
    assert client.get("/console/", follow_redirects=False).status_code == 200
    frozen_clock.advance(minutes=29)  # 29 minutes since the last request: still alive
    assert client.get("/console/", follow_redirects=False).status_code == 200
    frozen_clock.advance(minutes=31)
    response = client.get("/console/", follow_redirects=False)
    assert response.status_code == 303
    assert "reason=expired" in response.headers["location"]
    assert "会话已超时" in client.get(response.headers["location"]).text
    # used every 20 minutes, a session still ends 12 hours after login
    assert login("gz01.agent").status_code == 303
    for _ in range(35):  # 11 h 40 min
        frozen_clock.advance(minutes=20)
        assert client.get("/console/", follow_redirects=False).status_code == 200
    frozen_clock.advance(minutes=21)
    assert client.get("/console/", follow_redirects=False).status_code == 303


def test_a_password_change_ends_existing_sessions(client, login, engine):
    assert login("gz01.agent").status_code == 303
    with UnitOfWork(engine) as uow:
        user = next(u for u in iam.list_users(uow) if u.username == "gz01.agent")
        iam.set_password(uow, user.id, "a brand new password")
        uow.commit()
    response = client.get("/console/", follow_redirects=False)
    assert response.status_code == 303
    assert "reason=ended" in response.headers["location"]


def test_a_new_mfa_user_must_enrol_first(client, login, engine, frozen_clock):
    with UnitOfWork(engine) as uow:
        gz = iam.get_org_unit_by_code(uow, "GZ")
        iam.create_user(uow, "gz.admin2", "New admin", "a long new password", gz.id, ["org_admin"])
        uow.commit()
    response = login("gz.admin2", "a long new password")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/mfa/enrol"
    # nothing else is reachable before enrolling
    blocked = client.get("/console/customers", follow_redirects=False)
    assert blocked.headers["location"] == "/console/mfa/enrol"
    page = client.get("/console/mfa/enrol")
    token = csrf_of(client, "/console/mfa/enrol")
    shown = client.post("/console/mfa/enrol", data={"csrf_token": token})
    assert shown.status_code == 200 and "otpauth://totp/" in shown.text
    import re

    import pyotp

    secret = re.search(r'id="secret">([A-Z2-7]+)<', shown.text).group(1)
    wrong = client.post(
        "/console/mfa/confirm",
        data={"csrf_token": token, "code": "12345", "secret": secret, "uri": "otpauth://x"},
    )
    assert wrong.status_code == 422 and secret in wrong.text
    code = pyotp.TOTP(secret).at(frozen_clock.now())
    done = client.post(
        "/console/mfa/confirm",
        data={"csrf_token": token, "code": code},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "reason=enrolled" in done.headers["location"]
    assert page.status_code == 200
    # the session ended; the next login needs a (later) code
    assert client.get("/console/", follow_redirects=False).status_code == 303
    assert login("gz.admin2", "a long new password").status_code == 401
    later = pyotp.TOTP(secret).at(frozen_clock.now().timestamp() + 30)
    assert login("gz.admin2", "a long new password", code=later).status_code == 303
