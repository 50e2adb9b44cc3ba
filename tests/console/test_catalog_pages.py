"""Catalog administration in the console: the offerings list (filters, paging, exports),
an offering's page, creating and editing offerings (amounts in yuan), activating and
retiring, the rewards list, permissions, regional scoping and both languages."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from decimal import Decimal

from sqlalchemy import func, select

from teleserve.catalog import service as catalog
from teleserve.catalog.models import Offering
from teleserve.core.audit import AuditRecord
from teleserve.core.i18n import catalog as messages
from teleserve.core.uow import UnitOfWork

from .conftest import totp_now

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OFFERING_LINK = re.compile(r'href="/console/catalog/([0-9a-f]{32})"')


def _token(client, path="/console/catalog"):
    return CSRF.search(client.get(path).text).group(1)


def _offering(engine, code):
    with UnitOfWork(engine, readonly=True) as uow:
        return catalog.get_offering(uow, code)


def _count(engine):
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Offering))


def _actions(engine, subject_id):
    with engine.connect() as conn:
        return conn.execute(
            select(AuditRecord.action, AuditRecord.detail)
            .where(AuditRecord.subject_id == subject_id)
            .order_by(AuditRecord.at, AuditRecord.seq)
        ).all()


def _form(**overrides):
    data = {
        "code": "MOB-66",
        "kind": "plan",
        "name_zh": "畅享66元套餐",
        "name_en": "Enjoy 66",
        "description_zh": "",
        "description_en": "",
        "category": "mobile",
        "valid_from": "",
        "valid_to": "",
        "monthly_fee": "66.00",
        "one_time_fee": "",
        "voice_rate": "0.15",
        "data_rate": "0.0003",
        "sms_rate": "0.1",
        "voice_minutes": "300",
        "data_mb": "40960",
        "sms_count": "100",
        "requires_plans": "",
        "excludes": "",
        "customer_categories": ["individual"],
        "account_types": [],
        "regions": [],
    }
    data.update(overrides)
    return data


def _login_admin(login, frozen_clock):
    assert login("admin", code=totp_now(frozen_clock)).status_code == 303


def test_the_list_filters_pages_and_links_to_each_offering(client, login, engine, monkeypatch):
    from teleserve.catalog import views

    login("gz01.agent")
    home = client.get("/console/").text
    assert 'href="/console/catalog"' in home  # the menu entry leads to the page now
    page = client.get("/console/catalog")
    assert page.status_code == 200
    assert "MOB-58" in page.text and "¥58.00" in page.text and "VAS-CLIP" in page.text
    assert "/console/catalog/new" not in page.text  # an agent cannot create offerings
    vas = client.get("/console/catalog", params={"kind": "vas"}).text
    assert "VAS-CLIP" in vas and "MOB-58" not in vas
    # text in the code or either name, ignoring case
    found = client.get("/console/catalog", params={"q": "enjoy 5"}).text
    assert "MOB-58" in found and "MOB-38" not in found
    assert "MOB-88" in client.get("/console/catalog", params={"q": "畅享88"}).text
    assert "BB-1000M" in client.get("/console/catalog", params={"q": "bb-1000"}).text
    # a filter value the list does not know is a message, not an error page
    bad = client.get("/console/catalog", params={"kind": "bogus"})
    assert bad.status_code == 200 and 'class="message error"' in bad.text
    assert "未知的类型" in bad.text or "bogus" in bad.text
    monkeypatch.setattr(views, "PAGE_SIZE", 4)
    first = client.get("/console/catalog").text
    second = client.get("/console/catalog", params={"p": 2}).text
    first_ids, second_ids = OFFERING_LINK.findall(first), OFFERING_LINK.findall(second)
    assert len(first_ids) == 4 and second_ids and not set(first_ids) & set(second_ids)
    assert "p=2" in first and "p=1" in second
    # the offering's page: prices in yuan, allowances, eligibility, regions, rewards
    data_pack = _offering(engine, "VAS-DATA10G")
    detail = client.get(f"/console/catalog/{data_pack.id}")
    assert detail.status_code == 200
    html = detail.text
    assert "¥30.00" in html and "10240" in html and "MOB-38" in html
    assert "RW-DATA10G" in html  # the reward that grants it
    assert "/edit" not in html and "/retire" not in html  # no write actions for an agent
    plan = _offering(engine, "MOB-58")
    plan_html = client.get(f"/console/catalog/{plan.id}").text
    assert "¥0.15" in plan_html and "¥0.03" in plan_html  # usage rates per unit in yuan


def test_rewards_list_is_read_only_and_exported(client, login, engine):
    login("gz01.agent")
    page = client.get("/console/catalog/rewards")
    assert page.status_code == 200
    assert "RW-CREDIT10" in page.text and "¥10.00" in page.text and "3000" in page.text
    assert '<form method="post"' not in page.text.split('<main id="main"', 1)[1]
    response = client.get("/console/catalog/rewards/export/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][0] == "代码" and len(rows) == 4
    assert {r[0] for r in rows[1:]} == {"RW-DATA10G", "RW-CREDIT10", "RW-CREDIT50"}
    with engine.connect() as conn:
        details = conn.scalars(
            select(AuditRecord.detail).where(
                AuditRecord.action == "console.exported", AuditRecord.subject_id == "rewards"
            )
        ).all()
    assert len(details) == 1 and '"rows":3' in details[0]


def test_permissions_are_the_services_and_the_menu_follows_them(client, login, engine):
    login("gz.ops")  # terminal operations: no catalog at all
    assert 'href="/console/catalog"' not in client.get("/console/").text
    assert client.get("/console/catalog").status_code == 403
    assert client.get("/console/catalog/export/csv").status_code == 403
    client.cookies.clear()
    login("gz01.agent")  # reads the catalog, may not change it
    assert client.get("/console/catalog/new").status_code == 403
    before = _count(engine)
    refused = client.post("/console/catalog/new", data={**_form(), "csrf_token": _token(client)})
    assert refused.status_code == 403 and "catalog.write" in refused.text
    plan = _offering(engine, "MOB-58")
    assert client.get(f"/console/catalog/{plan.id}/edit").status_code == 403
    token = _token(client)
    retire = client.post(
        f"/console/catalog/{plan.id}/retire", data={"reason": "test", "csrf_token": token}
    )
    assert retire.status_code == 403
    assert _count(engine) == before and _offering(engine, "MOB-58").status == "active"


def test_an_offering_sold_only_elsewhere_is_a_404(client, login, engine, frozen_clock):
    with UnitOfWork(engine) as uow:
        local = catalog.create_offering(
            uow,
            {
                "code": "SZ-LOCAL-9",
                "kind": "plan",
                "name_zh": "深圳本地9元",
                "name_en": "Shenzhen local 9",
                "status": "active",
                "regions": ("/TS/GD/SZ/",),
            },
        )
        uow.commit()
    login("gz01.agent")
    assert client.get(f"/console/catalog/{local.id}").status_code == 404
    assert "SZ-LOCAL-9" not in client.get("/console/catalog", params={"q": "SZ-LOCAL"}).text
    assert client.get("/console/catalog/" + "0" * 32).status_code == 404
    client.cookies.clear()
    login("sz01.agent")
    page = client.get(f"/console/catalog/{local.id}")
    assert page.status_code == 200 and "/TS/GD/SZ/" in page.text


def test_create_edit_activate_and_retire(client, login, engine, frozen_clock):
    _login_admin(login, frozen_clock)
    form = client.get("/console/catalog/new")
    assert form.status_code == 200 and 'name="monthly_fee"' in form.text
    assert 'value="/TS/GD/GZ/"' in form.text  # regions to tick, by name
    created = client.post(
        "/console/catalog/new",
        data={**_form(regions=["/TS/GD/GZ/"]), "csrf_token": _token(client)},
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    offering = _offering(engine, "MOB-66")
    assert created.headers["location"] == f"/console/catalog/{offering.id}?done=created"
    assert offering.status == "draft" and offering.monthly_fee == 6600
    assert offering.voice_rate == Decimal("15") and offering.data_rate == Decimal("0.03")
    assert offering.sms_rate == Decimal("10") and offering.data_mb == 40960
    assert offering.customer_categories == ("individual",)
    assert offering.regions == ("/TS/GD/GZ/",)
    page = client.get(created.headers["location"]).text
    assert "已创建为草稿" in page and "广州" in page
    # edit a draft: everything may change
    edit = client.get(f"/console/catalog/{offering.id}/edit")
    assert (
        edit.status_code == 200 and 'value="66.00"' in edit.text and 'value="0.0003"' in edit.text
    )
    changed = client.post(
        f"/console/catalog/{offering.id}/edit",
        data={**_form(name_en="Enjoy 68", monthly_fee="68.5"), "csrf_token": _token(client)},
        follow_redirects=False,
    )
    assert changed.status_code == 303, changed.text
    offering = _offering(engine, "MOB-66")
    assert offering.name_en == "Enjoy 68" and offering.monthly_fee == 6850
    assert offering.regions == ()  # ticked off: sold everywhere
    token = _token(client)
    activated = client.post(f"/console/catalog/{offering.id}/activate", data={"csrf_token": token})
    assert activated.status_code == 200 and "已上架" in activated.text
    assert _offering(engine, "MOB-66").status == "active"
    retired = client.post(
        f"/console/catalog/{offering.id}/retire",
        data={"reason": "replaced by MOB-68", "csrf_token": token},
    )
    assert retired.status_code == 200
    assert _offering(engine, "MOB-66").status == "retired"
    actions = [a for a, _detail in _actions(engine, offering.id)]
    assert actions == [
        "catalog.offering.created",
        "catalog.offering.updated",
        "catalog.offering.activated",
        "catalog.offering.retired",
    ]
    assert "replaced by MOB-68" in _actions(engine, offering.id)[-1][1]
    # a retired offering offers no changes any more
    assert client.get(f"/console/catalog/{offering.id}/edit").status_code == 409


def test_refused_changes_show_the_reason_and_change_nothing(client, login, engine, frozen_clock):
    _login_admin(login, frozen_clock)
    token = _token(client)
    before = _count(engine)
    negative = client.post(
        "/console/catalog/new", data={**_form(monthly_fee="-5"), "csrf_token": token}
    )
    assert negative.status_code == 422
    assert 'class="message error"' in negative.text and "月租（元）" in negative.text
    assert 'value="畅享66元套餐"' in negative.text  # what was typed stays in the form
    too_precise = client.post(
        "/console/catalog/new", data={**_form(monthly_fee="1.005"), "csrf_token": token}
    )
    assert too_precise.status_code == 422
    taken = client.post("/console/catalog/new", data={**_form(code="MOB-58"), "csrf_token": token})
    assert taken.status_code == 409 and "MOB-58" in taken.text
    vas_rule = client.post(
        "/console/catalog/new", data={**_form(requires_plans="MOB-58"), "csrf_token": token}
    )
    assert vas_rule.status_code == 422 and "增值业务" in vas_rule.text
    assert _count(engine) == before
    # an active offering keeps its prices
    plan = _offering(engine, "MOB-58")
    refused = client.post(
        f"/console/catalog/{plan.id}/edit",
        data={
            **_form(code="", kind="", name_zh=plan.name_zh, name_en=plan.name_en),
            "monthly_fee": "48",
            "csrf_token": token,
        },
    )
    assert refused.status_code == 409 and 'class="message error"' in refused.text
    assert 'value="48"' in refused.text
    # retiring needs a reason; activating an active offering is refused
    no_reason = client.post(f"/console/catalog/{plan.id}/retire", data={"csrf_token": token})
    assert no_reason.status_code == 422 and "原因" in no_reason.text
    again = client.post(f"/console/catalog/{plan.id}/activate", data={"csrf_token": token})
    assert again.status_code == 409
    # without the CSRF token nothing happens either
    forged = client.post(f"/console/catalog/{plan.id}/retire", data={"reason": "x"})
    assert forged.status_code == 403
    after = _offering(engine, "MOB-58")
    assert after.status == "active" and after.monthly_fee == 5800 and after == plan
    assert [a for a, _ in _actions(engine, plan.id)] == ["catalog.offering.created"]


def test_exports_follow_the_filters_and_are_audited(client, login, engine):
    login("gz01.agent")
    response = client.get("/console/catalog/export/csv", params={"kind": "broadband"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["代码", "产品名称", "类型"]
    assert sorted(r[0] for r in rows[1:]) == ["BB-1000M", "BB-300M"]
    assert {r[5] for r in rows[1:]} == {"99.0", "199.0"}  # monthly fees in yuan
    book = client.get("/console/catalog/export/xlsx", params={"q": "enjoy"})
    assert book.status_code == 200
    with zipfile.ZipFile(io.BytesIO(book.content)) as archive:
        names = archive.namelist()
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
        shared = (
            archive.read("xl/sharedStrings.xml").decode() if "xl/sharedStrings.xml" in names else ""
        )
    assert "MOB-58" in sheet + shared and "BB-300M" not in sheet + shared
    with engine.connect() as conn:
        details = conn.scalars(
            select(AuditRecord.detail)
            .where(AuditRecord.action == "console.exported", AuditRecord.subject_id == "offerings")
            .order_by(AuditRecord.id)  # in the order written (PostgreSQL guarantees no other)
        ).all()
    assert len(details) == 2 and '"rows":2' in details[0] and '"rows":5' in details[1]
    assert client.get("/console/catalog/export/pdf").status_code == 404


def test_every_catalog_page_renders_in_both_languages(client, login, engine, frozen_clock):
    _login_admin(login, frozen_clock)
    plan = _offering(engine, "MOB-58")
    vas = _offering(engine, "VAS-DATA10G")
    pages = [
        "/console/catalog",
        "/console/catalog?kind=nope",
        "/console/catalog/rewards",
        f"/console/catalog/{plan.id}",
        f"/console/catalog/{vas.id}",
        f"/console/catalog/{plan.id}/edit",
        "/console/catalog/new",
    ]
    zh = messages("zh-CN")
    english = sorted(
        (m for m, t in zh.items() if m != t and "{" not in m and len(m) > 12), key=len, reverse=True
    )
    for path in pages:
        html = client.get(path).text
        assert '<html lang="zh-CN">' in html, path
        text = re.sub(r"<[^>]+>", " ", html)
        leaked = [m for m in english if m in text]
        assert not leaked, (path, leaked[:5])
    token = _token(client)
    client.post("/console/language", data={"locale": "en", "next": "/", "csrf_token": token})
    for path in pages:
        html = client.get(path).text
        assert '<html lang="en">' in html, path
        assert not re.search(r"[\u4e00-\u9fff]{2,}", _ui_only(html)), path


def _ui_only(html: str) -> str:
    """The page's interface text: without data (names typed in Chinese, org unit names),
    the user's name and the switch to Chinese."""
    html = re.sub(r"<(td|dd|h1|title|li)[^>]*>.*?</\1>", "", html, flags=re.S)
    html = re.sub(r'<span class="user".*?</span>', "", html, flags=re.S)
    html = re.sub(r"<(input|textarea)[^>]*>(.*?</textarea>)?", "", html, flags=re.S)
    html = re.sub(r"<label><input[^>]*>[^<]*</label>", "", html, flags=re.S)
    html = re.sub(r'<button[^>]*lang="zh-CN"[^>]*>.*?</button>', "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)
