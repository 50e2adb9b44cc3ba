"""Console pages through HTTP: role-based menus, customer search, the 360° page, scoping
(another organisation's customer is a 404), exports, revealing an ID number, and both
languages."""

from __future__ import annotations

import csv
import io
import re
import zipfile

from sqlalchemy import select

from teleserve.core.audit import AuditRecord
from teleserve.core.i18n import catalog
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.inventory import service as inventory

from .conftest import in_scope, totp_now

GZ01 = "/TS/GD/GZ/GZ01/"


def _menu(html: str) -> list[str]:
    nav = re.search(r'<nav class="menu".*?</nav>', html, re.S)
    return re.findall(r'href="(/console/[^"]+)"', nav.group(0)) if nav else []


def test_the_menu_follows_the_roles(client, login, frozen_clock):
    login("gz01.agent")
    agent = _menu(client.get("/console/").text)
    assert "/console/customers" in agent and "/console/soon/orders" in agent
    assert "/console/staff" not in agent and "/console/terminals" not in agent
    client.cookies.clear()
    login("gz.ops")
    ops = _menu(client.get("/console/").text)
    assert "/console/terminals" in ops and "/console/customers" not in ops
    # a page the role may not use is refused in the layout, not hidden behind a 500
    refused = client.get("/console/customers")
    assert refused.status_code == 403 and "customers.read" in refused.text
    client.cookies.clear()
    login("admin", code=totp_now(frozen_clock))
    admin = _menu(client.get("/console/").text)
    assert {"/console/customers", "/console/staff", "/console/dashboard"} <= set(admin)
    # entries not built yet lead to an honest page, never to a 404
    for url in admin:
        assert client.get(url).status_code == 200, url
    soon = client.get("/console/soon/orders").text
    assert "工作台的这一部分暂未开放" in soon
    # an entry the role cannot see is not reachable by its address either
    client.cookies.clear()
    login("gz01.agent")
    assert client.get("/console/soon/reports").status_code == 404


def test_search_by_name_number_id_and_customer_number(client, login, engine, seeded):
    login("gz01.agent")
    mine = in_scope(seeded, GZ01)
    assert mine, "the seed put nobody in GZ01"
    target = mine[0]
    with UnitOfWork(engine) as uow:
        id_number = customers.reveal_id_number(uow, target.id)
        line = inventory.list_for_customer(uow, target.id)[0]
        uow.commit()
    for query in (target.name[:2], line.service_number, id_number, target.number):
        page = client.get("/console/customers", params={"q": query})
        assert page.status_code == 200
        assert f"/console/customers/{target.id}" in page.text, query
        assert target.name not in page.text or len(target.name) == 1  # names are masked
    # htmx asks for the results region only
    partial = client.get(
        "/console/customers",
        params={"q": target.number},
        headers={"HX-Request": "true", "HX-Target": "search-results"},
    )
    assert partial.text.lstrip().startswith('<section id="search-results"')
    # bad input is a clear message in the results, not an error page
    bad = client.get("/console/customers", params={"q": "x", "kind": "bogus"})
    assert bad.status_code == 200 and 'class="message error"' in bad.text
    assert "未知的查询方式" in bad.text
    # customers of another city are not found by any key
    other = next(c for c in seeded if not c.org_path.startswith("/TS/GD/GZ/"))
    page = client.get("/console/customers", params={"q": other.number})
    assert f"/console/customers/{other.id}" not in page.text


def test_search_pages(client, login, seeded, monkeypatch):
    from teleserve.customers import views

    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    login("gz01.agent")
    mine = in_scope(seeded, GZ01)
    surname = max({c.name[0] for c in mine}, key=lambda s: sum(c.name[0] == s for c in mine))
    count = sum(c.name.startswith(surname) for c in mine)
    first = client.get("/console/customers", params={"q": surname})
    shown = len(re.findall(r'href="/console/customers/[0-9a-f]{32}"', first.text))
    assert shown == min(count, 2)
    assert ("p=2" in first.text) == (count > 2)


def test_the_360_page_shows_accounts_lines_balance_payments_and_trail(client, login, seeded):
    login("gz01.agent")
    target = in_scope(seeded, GZ01)[0]
    page = client.get(f"/console/customers/{target.id}")
    assert page.status_code == 200
    html = page.text
    for heading in ("基本资料", "联系方式", "账户", "用户（号码）", "缴费记录", "审计记录"):
        assert heading in html
    assert 'data-testid="balance"' in html and "¥" in html
    assert "customer.registered" in html or "customer." in html  # its audit trail
    # the panels later releases fill say so
    assert html.count("将在后续版本提供。") == 4
    assert target.name not in html or len(target.name) == 1
    # more of the trail, as a fragment for htmx
    trail = client.get(f"/console/customers/{target.id}/audit", headers={"HX-Request": "true"})
    assert trail.status_code == 200 and trail.text.lstrip().startswith('<div id="trail">')


def test_another_organisations_customer_is_a_404_page(client, login, seeded):
    login("gz01.agent")
    other = next(c for c in seeded if not c.org_path.startswith(GZ01))
    page = client.get(f"/console/customers/{other.id}")
    assert page.status_code == 404
    assert 'class="menu"' in page.text  # inside the layout
    assert client.get(f"/console/customers/{other.id}/audit").status_code == 404
    assert client.get("/console/customers/" + "0" * 32).status_code == 404
    assert client.get("/console/no-such-page").status_code == 404


def test_revealing_an_id_number_is_audited_and_needs_the_permission(client, login, seeded, engine):
    login("gz01.agent")
    target = in_scope(seeded, GZ01)[0]
    html = client.get(f"/console/customers/{target.id}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    document_id = re.search(r'name="document_id" value="([^"]+)"', html).group(1)
    revealed = client.post(
        f"/console/customers/{target.id}/reveal-id",
        data={"csrf_token": token, "document_id": document_id},
        headers={"HX-Request": "true"},
    )
    assert revealed.status_code == 200
    assert re.search(r"\d{17}[\dX]", revealed.text)
    with engine.connect() as conn:
        actions = conn.scalars(
            select(AuditRecord.action).where(AuditRecord.subject_id == target.id)
        ).all()
    assert "customer.id_number_revealed" in actions
    # a cashier may see the customer but not the full number
    client.cookies.clear()
    login("gz01.cashier")
    html = client.get(f"/console/customers/{target.id}").text
    assert "reveal-id" not in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    refused = client.post(f"/console/customers/{target.id}/reveal-id", data={"csrf_token": token})
    assert refused.status_code == 403


def test_exports_are_masked_audited_csv_and_xlsx(client, login, seeded, engine):
    login("gz01.agent")
    mine = in_scope(seeded, GZ01)
    surname = mine[0].name[0]
    expected = sum(c.name.startswith(surname) for c in mine)
    response = client.get("/console/customers/export/csv", params={"q": surname})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][0] == "客户编号" and len(rows) == expected + 1
    assert all("*" in row[1] for row in rows[1:])  # masked names
    book = client.get("/console/customers/export/xlsx", params={"q": surname})
    assert book.status_code == 200
    with zipfile.ZipFile(io.BytesIO(book.content)) as archive:
        names = archive.namelist()
        assert "xl/worksheets/sheet1.xml" in names
        shared = (
            archive.read("xl/sharedStrings.xml").decode()
            if ("xl/sharedStrings.xml" in names)
            else archive.read("xl/worksheets/sheet1.xml").decode()
        )
    assert "客户编号" in shared
    with engine.connect() as conn:
        exports = conn.scalars(
            select(AuditRecord.detail).where(AuditRecord.action == "console.exported")
        ).all()
    assert len(exports) == 2 and all(f'"rows":{expected}' in d for d in exports)
    assert client.get("/console/customers/export/pdf", params={"q": surname}).status_code == 404


def test_every_page_renders_in_both_languages(client, login, seeded):
    login("gz01.agent")
    target = in_scope(seeded, GZ01)[0]
    pages = [
        "/console/",
        f"/console/customers?q={target.number}",
        "/console/customers",
        f"/console/customers/{target.id}",
        f"/console/customers/{target.id}/audit",
        "/console/soon/orders",
        "/console/nothing-here",
    ]
    zh = catalog("zh-CN")
    # English message ids that differ from their translation must not show in Chinese
    english = sorted(
        (m for m, t in zh.items() if m != t and "{" not in m and len(m) > 12),
        key=len,
        reverse=True,
    )
    for path in pages:
        html = client.get(path).text
        assert '<html lang="zh-CN">' in html, path
        text = re.sub(r"<[^>]+>", " ", html)
        leaked = [m for m in english if m in text]
        assert not leaked, (path, leaked[:5])
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/").text)
    switched = client.post(
        "/console/language",
        data={"locale": "en", "next": "/console/customers", "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert switched.headers["location"] == "/console/customers"
    for path in pages:
        html = client.get(path).text
        assert '<html lang="en">' in html, path
        assert not re.search(r"[\u4e00-\u9fff]{2,}", re.sub(r"<[^>]+>", " ", _ui_only(html))), path
    # the language outlives the session (the login page after logout)
    client.post("/console/logout", data={"csrf_token": token.group(1)})
    assert '<html lang="en">' in client.get("/console/login").text


def _ui_only(html: str) -> str:
    """The page without data cells (names, plan names and addresses are Chinese data)."""
    html = re.sub(r"<td[^>]*>.*?</td>", "", html, flags=re.S)
    html = re.sub(r"<h1>.*?</h1>", "", html, flags=re.S)
    html = re.sub(r'<span class="user".*?</span>', "", html, flags=re.S)
    html = re.sub(r"<title>.*?</title>", "", html, flags=re.S)
    html = re.sub(r"<dd[^>]*>.*?</dd>", "", html, flags=re.S)
    return re.sub(r'<button[^>]*lang="zh-CN"[^>]*>.*?</button>', "", html, flags=re.S)
