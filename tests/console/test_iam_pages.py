"""Staff, organisation and API-client pages through HTTP: lists with filters, paging and
exports; changes that succeed and refusals shown in the form with nothing changed;
another organisation's records answer 404; permissions by role; both languages."""

from __future__ import annotations

import csv
import io
import re
import zipfile

from sqlalchemy import select, text

from teleserve.core.audit import AuditRecord
from teleserve.core.i18n import catalog
from teleserve.iam import views

from .conftest import totp_now
from .test_pages import _ui_only

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GZ_STAFF = {"gz.admin", "gz.manager", "gz.ops", "gz.backoffice", "gz01.agent", "gz01.cashier"}


def _user_id(engine, username: str) -> str:
    with engine.connect() as conn:
        return conn.scalar(
            text("SELECT id FROM iam_staff_user WHERE username = :u"), {"u": username}
        )


def _org_id(engine, code: str) -> str:
    with engine.connect() as conn:
        return conn.scalar(text("SELECT id FROM iam_org_unit WHERE code = :c"), {"c": code})


def _roles(engine, username: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.scalars(
                text(
                    "SELECT r.role FROM iam_staff_user_role r JOIN iam_staff_user u"
                    " ON u.id = r.user_id WHERE u.username = :u"
                ),
                {"u": username},
            )
        )


def _usernames(html: str) -> set[str]:
    return set(
        re.findall(r'<td class="mono"><a href="/console/staff/[0-9a-f]{32}">([^<]+)</a>', html)
    )


def _token(client, path: str = "/console/staff") -> str:
    return CSRF.search(client.get(path).text).group(1)


def _admin_of_gz(login, frozen_clock) -> None:
    assert login("gz.admin", code=totp_now(frozen_clock)).status_code == 303


def test_the_staff_list_filters_pages_and_stays_in_the_subtree(
    client, login, frozen_clock, engine, monkeypatch
):
    _admin_of_gz(login, frozen_clock)
    page = client.get("/console/staff")
    assert page.status_code == 200
    assert _usernames(page.text) == GZ_STAFF  # never Shenzhen's or the operator's staff
    agents = client.get("/console/staff", params={"role": "agent"})
    assert _usernames(agents.text) == {"gz01.agent"}
    hall = client.get("/console/staff", params={"org": _org_id(engine, "GZ01")})
    assert _usernames(hall.text) == {"gz01.agent", "gz01.cashier"}
    locked = client.get("/console/staff", params={"status": "locked"})
    assert _usernames(locked.text) == set() and "没有符合条件的用户。" in locked.text
    # a filter naming another organisation's unit or an unknown role: a message, no list
    other = client.get("/console/staff", params={"org": _org_id(engine, "SZ")})
    assert other.status_code == 200 and "组织不存在" in other.text and not _usernames(other.text)
    bogus = client.get("/console/staff", params={"role": "pope"})
    assert 'data-testid="form-error"' in bogus.text and "未知的角色 pope" in bogus.text
    monkeypatch.setattr(views, "PAGE_SIZE", 4)
    first = client.get("/console/staff")
    second = client.get("/console/staff", params={"p": 2})
    assert len(_usernames(first.text)) == 4 and 'rel="next"' in first.text
    assert _usernames(first.text) | _usernames(second.text) == GZ_STAFF
    assert 'rel="next"' not in second.text and 'rel="prev"' in second.text


def test_staff_exports_are_audited(client, login, frozen_clock, engine):
    _admin_of_gz(login, frozen_clock)
    answer = client.get("/console/staff/export/csv", params={"role": "agent"})
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["用户名", "姓名/名称", "所属组织"]
    assert [r[0] for r in rows[1:]] == ["gz01.agent"] and rows[1][3] == "营业员"
    book = client.get("/console/staff/export/xlsx")
    with zipfile.ZipFile(io.BytesIO(book.content)) as archive:
        assert "xl/worksheets/sheet1.xml" in archive.namelist()
    orgs = client.get("/console/staff/orgs/export/csv")
    org_rows = list(csv.reader(io.StringIO(orgs.content.decode("utf-8-sig"))))
    assert [r[0] for r in org_rows[1:]] == ["GZ", "GZ01", "GZ02", "GZ03"]
    assert client.get("/console/staff/api-clients/export/xlsx").status_code == 200
    with engine.connect() as conn:
        exported = conn.scalars(
            select(AuditRecord.subject_id).where(AuditRecord.action == "console.exported")
        ).all()
    assert sorted(exported) == ["api_clients", "org_units", "staff", "staff"]
    assert client.get("/console/staff/export/pdf").status_code == 404


def test_creating_a_user_and_the_refusals_in_the_form(client, login, frozen_clock, engine):
    _admin_of_gz(login, frozen_clock)
    form = client.get("/console/staff/new")
    assert form.status_code == 200
    # an organisation administrator may not hand out the operator-wide admin role
    assert 'value="org_admin"' in form.text and 'value="admin"' not in form.text
    token = CSRF.search(form.text).group(1)
    data = {
        "csrf_token": token,
        "username": "gz01.new",
        "display_name": "新营业员",
        "password": "Another-long-passphrase-2026",
        "org_id": _org_id(engine, "GZ01"),
        "roles": ["agent", "admin"],
    }
    refused = client.post("/console/staff/new", data=data)
    assert refused.status_code == 403
    assert "您无权授予或管理角色 admin" in refused.text and 'value="gz01.new"' in refused.text
    assert "Another-long-passphrase-2026" not in refused.text  # never echoed back
    assert _user_id(engine, "gz01.new") is None
    elsewhere = client.post(
        "/console/staff/new", data={**data, "roles": ["agent"], "org_id": _org_id(engine, "SZ01")}
    )
    assert elsewhere.status_code == 422 and "组织不存在" in elsewhere.text
    taken = client.post(
        "/console/staff/new", data={**data, "roles": ["agent"], "username": "gz01.agent"}
    )
    assert taken.status_code == 409 and "用户名 gz01.agent 已被占用" in taken.text
    assert _user_id(engine, "gz01.new") is None
    created = client.post(
        "/console/staff/new", data={**data, "roles": ["agent"]}, follow_redirects=False
    )
    assert created.status_code == 303
    user_id = _user_id(engine, "gz01.new")
    assert created.headers["location"] == f"/console/staff/{user_id}?done=created"
    detail = client.get(created.headers["location"])
    assert "用户已创建。" in detail.text and "营业员" in detail.text
    assert _roles(engine, "gz01.new") == {"agent"}
    # without CSRF nothing happens
    forged = client.post(
        "/console/staff/new", data={**data, "csrf_token": "x", "username": "gz01.forged"}
    )
    assert forged.status_code == 403 and _user_id(engine, "gz01.forged") is None


def test_roles_status_lockout_and_authenticator(client, login, frozen_clock, engine):
    # lock the cashier out first (five wrong passwords)
    for _ in range(5):
        login("gz01.cashier", "wrong password")
    _admin_of_gz(login, frozen_clock)
    agent = _user_id(engine, "gz01.agent")
    token = _token(client)
    changed = client.post(
        f"/console/staff/{agent}/roles",
        data={"csrf_token": token, "roles": ["agent", "cashier"]},
        follow_redirects=False,
    )
    assert changed.status_code == 303 and _roles(engine, "gz01.agent") == {"agent", "cashier"}
    refused = client.post(
        f"/console/staff/{agent}/roles", data={"csrf_token": token, "roles": ["admin"]}
    )
    assert refused.status_code == 403 and "您无权授予或管理角色 admin" in refused.text
    assert _roles(engine, "gz01.agent") == {"agent", "cashier"}
    empty = client.post(f"/console/staff/{agent}/roles", data={"csrf_token": token})
    assert empty.status_code == 422 and "用户至少需要一个角色" in empty.text
    # deactivate, refuse a second time, reactivate
    off = client.post(f"/console/staff/{agent}/deactivate", data={"csrf_token": token})
    assert off.status_code == 200 and "用户已停用" in off.text  # redirect followed
    again = client.post(f"/console/staff/{agent}/deactivate", data={"csrf_token": token})
    assert again.status_code == 409 and "该用户已停用" in again.text
    with engine.connect() as conn:
        assert conn.scalar(
            text("SELECT active FROM iam_staff_user WHERE id = :i"), {"i": agent}
        ) in (False, 0)
    on = client.post(f"/console/staff/{agent}/reactivate", data={"csrf_token": token})
    assert on.status_code == 200 and "用户已重新启用。" in on.text
    # the locked cashier shows as locked, and is unlocked
    cashier = _user_id(engine, "gz01.cashier")
    assert "gz01.cashier" in client.get("/console/staff", params={"status": "locked"}).text
    detail = client.get(f"/console/staff/{cashier}")
    assert "/unlock" in detail.text and "锁定至" in detail.text
    unlocked = client.post(f"/console/staff/{cashier}/unlock", data={"csrf_token": token})
    assert "用户已解锁。" in unlocked.text
    assert _usernames(client.get("/console/staff", params={"status": "locked"}).text) == set()
    # nobody changes their own account here, not even an administrator
    me = _user_id(engine, "gz.admin")
    mine = client.post(f"/console/staff/{me}/reset-mfa", data={"csrf_token": token})
    assert mine.status_code == 403 and "请由其他管理员修改您本人的账号" in mine.text
    assert (
        client.post(f"/console/staff/{agent}/explode", data={"csrf_token": token}).status_code
        == 404
    )


def test_an_operator_admin_resets_an_authenticator(client, login, frozen_clock, engine):
    login("admin", code=totp_now(frozen_clock))
    target = _user_id(engine, "gz.admin")
    detail = client.get(f"/console/staff/{target}")
    assert "/reset-mfa" in detail.text and "已绑定" in detail.text
    token = CSRF.search(detail.text).group(1)
    reset = client.post(f"/console/staff/{target}/reset-mfa", data={"csrf_token": token})
    assert reset.status_code == 200 and "身份验证器已重置" in reset.text
    assert "必须使用，尚未绑定" in reset.text
    with engine.connect() as conn:
        assert (
            conn.scalar(
                text("SELECT mfa_secret_enc FROM iam_staff_user WHERE id = :i"), {"i": target}
            )
            is None
        )


def test_another_organisations_staff_answer_404(client, login, frozen_clock, engine):
    _admin_of_gz(login, frozen_clock)
    other = _user_id(engine, "sz01.agent")
    page = client.get(f"/console/staff/{other}")
    assert page.status_code == 404 and 'class="menu"' in page.text
    token = _token(client)
    for action in ("deactivate", "unlock", "reset-mfa"):
        assert (
            client.post(f"/console/staff/{other}/{action}", data={"csrf_token": token}).status_code
            == 404
        )
    roles = client.post(
        f"/console/staff/{other}/roles", data={"csrf_token": token, "roles": ["cashier"]}
    )
    assert roles.status_code == 404 and _roles(engine, "sz01.agent") == {"agent"}
    with engine.connect() as conn:
        assert conn.scalar(
            text("SELECT active FROM iam_staff_user WHERE id = :i"), {"i": other}
        ) in (True, 1)
    assert client.get("/console/staff/" + "0" * 32).status_code == 404


def test_permissions_by_role(client, login, engine):
    login("gz.manager")  # reads staff, changes nothing
    page = client.get("/console/staff")
    assert page.status_code == 200 and "/console/staff/new" not in page.text
    assert client.get("/console/staff/new").status_code == 403
    agent = _user_id(engine, "gz01.agent")
    detail = client.get(f"/console/staff/{agent}")
    assert detail.status_code == 200 and "/deactivate" not in detail.text
    token = CSRF.search(detail.text).group(1)
    refused = client.post(f"/console/staff/{agent}/deactivate", data={"csrf_token": token})
    assert refused.status_code == 403 and "iam.users.write" in refused.text
    with engine.connect() as conn:
        assert conn.scalar(
            text("SELECT active FROM iam_staff_user WHERE id = :i"), {"i": agent}
        ) in (True, 1)
    assert client.get("/console/staff/api-clients").status_code == 403  # no iam.clients.read
    orgs = client.get("/console/staff/orgs")
    assert orgs.status_code == 200 and 'action="/console/staff/orgs"' not in orgs.text
    client.cookies.clear()
    login("gz01.agent")
    menu = client.get("/console/").text
    assert "/console/staff" not in menu
    assert client.get("/console/staff").status_code == 403
    # everyone may read their own account
    me = _user_id(engine, "gz01.agent")
    assert client.get(f"/console/staff/{me}").status_code == 200


def test_the_organisation_tree_and_new_units(client, login, frozen_clock, engine):
    _admin_of_gz(login, frozen_clock)
    tree = client.get("/console/staff/orgs")
    assert tree.status_code == 200
    assert "<details open>" in tree.text and "天河营业厅" in tree.text
    assert "深圳" not in tree.text  # another city's units are not in the actor's tree
    token = CSRF.search(tree.text).group(1)
    gz = _org_id(engine, "GZ")
    base = {
        "csrf_token": token,
        "parent_id": gz,
        "level": "hall",
        "code": "GZ04",
        "name_zh": "白云营业厅",
        "name_en": "Baiyun Hall",
    }
    wrong_level = client.post("/console/staff/orgs", data={**base, "level": "city"})
    assert wrong_level.status_code == 422
    assert "city 级组织不能挂在 city 级组织之下" in wrong_level.text
    assert 'value="GZ04"' in wrong_level.text  # what was typed stays in the form
    taken = client.post("/console/staff/orgs", data={**base, "code": "GZ01"})
    assert taken.status_code == 409 and "组织编码 GZ01 已被使用" in taken.text
    outside = client.post("/console/staff/orgs", data={**base, "parent_id": _org_id(engine, "SZ")})
    assert outside.status_code == 422 and "组织不存在" in outside.text
    assert _org_id(engine, "GZ04") is None
    created = client.post("/console/staff/orgs", data=base)
    assert created.status_code == 200 and "组织已创建。" in created.text
    assert "白云营业厅" in created.text
    with engine.connect() as conn:
        assert (
            conn.scalar(text("SELECT path FROM iam_org_unit WHERE code = 'GZ04'"))
            == "/TS/GD/GZ/GZ04/"
        )


def test_api_clients_show_the_secret_once_and_revoke(client, login, frozen_clock, engine):
    _admin_of_gz(login, frozen_clock)
    page = client.get("/console/staff/api-clients")
    assert page.status_code == 200 and "暂无 API 客户端。" in page.text
    assert 'value="catalog.write"' not in page.text  # beyond an org admin's own powers
    token = CSRF.search(page.text).group(1)
    data = {
        "csrf_token": token,
        "name": "广州 CRM",
        "org_id": _org_id(engine, "GZ"),
        "scopes": ["customers.read", "catalog.write"],
    }
    refused = client.post("/console/staff/api-clients", data=data)
    assert refused.status_code == 403 and "您不能授予超出自身权限的授权范围" in refused.text
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM iam_api_client")) == 0
    created = client.post("/console/staff/api-clients", data={**data, "scopes": ["customers.read"]})
    assert created.status_code == 201 and created.headers["cache-control"] == "no-store"
    secret = re.search(r'data-testid="client-secret">([^<]+)<', created.text).group(1)
    client_id = re.search(r'data-testid="client-id">([^<]+)<', created.text).group(1)
    assert secret.startswith("tss_")
    listing = client.get("/console/staff/api-clients")
    assert client_id in listing.text and secret not in listing.text
    revoked = client.post(
        f"/console/staff/api-clients/{client_id}/revoke", data={"csrf_token": token}
    )
    assert revoked.status_code == 200 and "API 客户端已吊销" in revoked.text
    again = client.post(
        f"/console/staff/api-clients/{client_id}/revoke", data={"csrf_token": token}
    )
    assert again.status_code == 409 and f"API 客户端 {client_id} 已被吊销" in again.text
    assert client_id not in client.get("/console/staff/api-clients").text
    assert client_id in client.get("/console/staff/api-clients", params={"revoked": "1"}).text
    # another organisation's client: 404, still active
    client.cookies.clear()
    login("sz.admin", code=totp_now(frozen_clock))
    sz_token = _token(client, "/console/staff/api-clients")
    sz = client.post(
        "/console/staff/api-clients",
        data={
            "csrf_token": sz_token,
            "name": "深圳 CRM",
            "org_id": _org_id(engine, "SZ"),
            "scopes": ["customers.read"],
        },
    )
    sz_client = re.search(r'data-testid="client-id">([^<]+)<', sz.text).group(1)
    client.cookies.clear()
    frozen_clock.advance(seconds=30)  # a fresh TOTP step for the second login
    _admin_of_gz(login, frozen_clock)
    token = _token(client)
    assert (
        client.post(
            f"/console/staff/api-clients/{sz_client}/revoke", data={"csrf_token": token}
        ).status_code
        == 404
    )
    with engine.connect() as conn:
        assert (
            conn.scalar(
                text("SELECT revoked_at FROM iam_api_client WHERE client_id = :c"), {"c": sz_client}
            )
            is None
        )


def test_every_staff_page_in_both_languages(client, login, frozen_clock, engine):
    _admin_of_gz(login, frozen_clock)
    agent = _user_id(engine, "gz01.agent")
    pages = [
        "/console/staff",
        "/console/staff/new",
        f"/console/staff/{agent}",
        "/console/staff/orgs",
        "/console/staff/api-clients",
    ]
    zh = catalog("zh-CN")
    english = sorted(
        (m for m, t in zh.items() if m != t and "{" not in m and len(m) > 12),
        key=len,
        reverse=True,
    )
    for path in pages:
        html = client.get(path).text
        assert '<html lang="zh-CN">' in html, path
        leaked = [m for m in english if m in re.sub(r"<[^>]+>", " ", html)]
        assert not leaked, (path, leaked[:5])
    token = _token(client)
    client.post(
        "/console/language", data={"locale": "en", "next": "/console/staff", "csrf_token": token}
    )
    for path in pages:
        html = client.get(path).text
        assert '<html lang="en">' in html, path
        # names of people and units are data; the interface itself is English
        ui = re.sub(r"<option[^>]*>.*?</option>", "", _ui_only(html), flags=re.S)
        ui = re.sub(
            r'<summary>.*?</summary>|<span class="leaf">.*?</span></span>', "", ui, flags=re.S
        )
        assert not re.search(r"[\u4e00-\u9fff]{2,}", re.sub(r"<[^>]+>", " ", ui)), path
