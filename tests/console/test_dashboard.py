"""The dashboard through HTTP: the home page of reports.read users, real figures of the
actor's subtree embedded for ECharts, honest empty charts, exports of each chart's data,
permissions and both languages."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

from sqlalchemy import select, text

from teleserve.core.audit import AuditRecord
from teleserve.core.i18n import catalog
from teleserve.core.uow import UnitOfWork
from teleserve.inventory import service as inventory
from teleserve.reports.service import CHARTS

from .conftest import in_scope, totp_now
from .test_pages import _ui_only

GZ = "/TS/GD/GZ/"


def _charts(html: str) -> dict[str, dict]:
    match = re.search(r'<script type="application/json" id="dashboard-data">(.*?)</script>', html)
    assert match, "no embedded chart data"
    return {chart["key"]: chart for chart in json.loads(match.group(1))["charts"]}


def _total(chart: dict) -> float:
    return sum(sum(series["values"]) for series in chart["series"])


def test_the_dashboard_is_the_home_of_reports_users_with_real_figures(
    client, login, frozen_clock, seeded, engine
):
    login("admin", code=totp_now(frozen_clock))
    home = client.get("/console/", follow_redirects=False)
    assert home.status_code == 303 and home.headers["location"] == "/console/dashboard"
    page = client.get("/console/dashboard")
    assert page.status_code == 200
    assert "/static/vendor/echarts/echarts.min.js" in page.text
    charts = _charts(page.text)
    assert set(charts) == set(CHARTS)
    with engine.connect() as conn:
        lines = conn.scalar(
            text("SELECT count(*) FROM inventory_subscription WHERE status <> 'terminated'")
        )
        paid = conn.scalar(text("SELECT sum(amount) FROM payment WHERE status = 'completed'"))
        pool = conn.scalar(text("SELECT count(*) FROM pool_number"))
    # customers by city: the operator sees its three cities, every customer counted once
    by_unit = charts["customers_by_unit"]
    assert by_unit["categories"] == ["佛山市分公司", "广州市分公司", "深圳市分公司"]
    assert _total(by_unit) == len(seeded)
    assert _total(charts["lines_by_plan"]) == lines
    # the seed's top-ups: counter cash on the frozen day, in yuan
    payments = charts["payments_by_day"]
    assert len(payments["categories"]) == 30 and payments["categories"][-1] == "11-25"
    assert [s["name"] for s in payments["series"]] == ["营业厅柜台（现金）"]
    assert round(_total(payments) * 100) == paid and payments["money"] is True
    assert _total(charts["pool_by_region"]) == pool
    assert [s["name"] for s in charts["pool_by_region"]["series"]] == [
        "空闲",
        "预占",
        "已分配",
        "冷冻期",
    ]
    # no line is barred in the seed: that chart says so instead of drawing empty axes
    assert page.text.count('data-testid="chart-empty"') == 1
    assert 'id="chart-open_bars"' not in page.text and 'id="chart-lines_by_plan"' in page.text
    assert "暂无数据" in page.text


def test_a_bar_appears_in_its_chart(client, login, frozen_clock, seeded, engine):
    target = in_scope(seeded, GZ)[0]
    with UnitOfWork(engine) as uow:
        line = inventory.list_for_customer(uow, target.id)[0]
        inventory.add_bar(uow, line.id, "fraud", "test")
        uow.commit()
    login("gz.manager")
    charts = _charts(client.get("/console/dashboard").text)
    bars = charts["open_bars"]
    fraud = bars["categories"].index("涉诈嫌疑")
    assert bars["series"][0]["values"][fraud] == 1 and _total(bars) == 1


def test_a_city_sees_its_halls_only(client, login, seeded):
    login("gz.manager")  # manager of Guangzhou: reports.read, no MFA
    page = client.get("/console/")
    assert page.url.path == "/console/dashboard"
    charts = _charts(page.text)
    by_unit = charts["customers_by_unit"]
    assert by_unit["categories"] == ["天河营业厅", "越秀营业厅", "番禺营业厅"]
    assert _total(by_unit) == len(in_scope(seeded, GZ))
    assert charts["pool_by_region"]["categories"] == ["广州市分公司"]


def test_without_reports_read_there_is_no_dashboard(client, login):
    login("gz01.agent")
    home = client.get("/console/", follow_redirects=False)
    assert home.status_code == 200 and "/console/dashboard" not in home.text
    refused = client.get("/console/dashboard")
    assert refused.status_code == 403 and "reports.read" in refused.text
    assert client.get("/console/dashboard/export/open_bars/csv").status_code == 403


def test_each_chart_exports_its_data_audited(client, login, seeded, engine):
    login("gz.manager")
    for key in CHARTS:
        answer = client.get(f"/console/dashboard/export/{key}/csv")
        assert answer.status_code == 200, key
        assert "attachment" in answer.headers["content-disposition"]
    rows = list(
        csv.reader(
            io.StringIO(
                client.get("/console/dashboard/export/customers_by_unit/csv").content.decode(
                    "utf-8-sig"
                )
            )
        )
    )
    assert rows[0] == ["营业厅", "客户"]
    assert sum(int(r[1]) for r in rows[1:]) == len(in_scope(seeded, GZ))
    money = list(
        csv.reader(
            io.StringIO(
                client.get("/console/dashboard/export/payments_by_day/csv").content.decode(
                    "utf-8-sig"
                )
            )
        )
    )
    assert money[0] == ["营业日", "营业厅柜台（现金）（元）"] and len(money) == 31
    assert money[-1][0] == "2026-11-25" and float(money[-1][1]) > 0
    book = client.get("/console/dashboard/export/pool_by_region/xlsx")
    assert book.status_code == 200
    with zipfile.ZipFile(io.BytesIO(book.content)) as archive:
        assert "xl/worksheets/sheet1.xml" in archive.namelist()
    with engine.connect() as conn:
        exported = conn.scalars(
            select(AuditRecord.subject_id).where(AuditRecord.action == "console.exported")
        ).all()
    assert len(exported) == len(CHARTS) + 3
    assert "dashboard.pool_by_region" in exported
    assert client.get("/console/dashboard/export/nothing/csv").status_code == 404
    assert client.get("/console/dashboard/export/open_bars/pdf").status_code == 404


def test_the_dashboard_in_both_languages(client, login, frozen_clock):
    login("finance", code=totp_now(frozen_clock))
    zh = catalog("zh-CN")
    english = sorted(
        (m for m, t in zh.items() if m != t and "{" not in m and len(m) > 12),
        key=len,
        reverse=True,
    )
    html = client.get("/console/dashboard").text
    assert '<html lang="zh-CN">' in html
    leaked = [m for m in english if m in re.sub(r"<[^>]+>", " ", html)]
    assert not leaked, leaked[:5]
    token = re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)
    client.post(
        "/console/language",
        data={"locale": "en", "next": "/console/dashboard", "csrf_token": token},
    )
    html = client.get("/console/dashboard").text
    assert '<html lang="en">' in html
    # chart labels (in the embedded JSON too) are English: plan and unit names come
    # from their English names
    ui = re.sub(r'<script type="application/json".*?</script>', "", _ui_only(html), flags=re.S)
    assert not re.search(r"[\u4e00-\u9fff]{2,}", re.sub(r"<[^>]+>", " ", ui))
    charts = _charts(html)
    assert charts["customers_by_unit"]["categories"] == [
        "Foshan Branch",
        "Guangzhou Branch",
        "Shenzhen Branch",
    ]
    assert not re.search(r"[\u4e00-\u9fff]", json.dumps(charts, ensure_ascii=False))
