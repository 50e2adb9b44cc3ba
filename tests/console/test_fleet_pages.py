"""The kiosk fleet in the console: the grid coloured by state and per site, a terminal's
page, alarms acknowledged and cleared, remote commands, cash collections and finance
exceptions, software versions, availability, exports, permissions, scoping, CSRF and
both languages."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile

import pytest
from sqlalchemy import select

from teleserve.core.actor import SYSTEM
from teleserve.core.audit import AuditRecord
from teleserve.core.i18n import catalog
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import alarms, cash, fleet

from .conftest import totp_now
from .fleet_support import EXPECTED_STATES, build_fleet, collect_short

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TILE = re.compile(r'data-terminal="([^"]+)" data-state="([^"]+)"')


@pytest.fixture
def kiosks(engine, seeded, frozen_clock) -> None:
    """The fleet is registered and reports 30 s into a local day (16:00 UTC is midnight
    in Shanghai) and is looked at a minute later: each kiosk has been in service 60 s,
    all of them covered by its report."""
    frozen_clock.advance(hours=14, seconds=30)
    build_fleet(engine)
    frozen_clock.advance(seconds=60)


def _token(client, path="/console/terminals"):
    return CSRF.search(client.get(path).text).group(1)


def _tiles(html: str) -> dict[str, str]:
    return dict(TILE.findall(html))


def _live_alarms(engine, terminal_id: str):
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        return alarms.list_alarms(uow, terminal_id=terminal_id, status=["open", "acknowledged"])


def _commands(engine, terminal_id: str):
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        return fleet.list_commands(uow, terminal_id=terminal_id)


def _exports(engine, what):
    with engine.connect() as conn:
        return conn.scalars(
            select(AuditRecord.detail).where(
                AuditRecord.action == "console.exported", AuditRecord.subject_id == what
            )
        ).all()


def test_the_grid_colours_every_terminal_by_state_within_the_actors_subtree(client, login, kiosks):
    login("gz.ops")
    page = client.get("/console/terminals")
    assert page.status_code == 200
    tiles = _tiles(page.text)
    expected = {k: v for k, v in EXPECTED_STATES.items() if k.startswith("GZ-")}
    assert tiles == expected  # Shenzhen's kiosk is not Guangzhou's business
    assert 'class="tile state-fault"' in page.text and "天河营业厅" in page.text
    counts = dict(re.findall(r'data-state-count="([a-z_]+)"[^>]*>[^<]*: (\d+)<', page.text))
    assert counts == {"ok": "1", "warning": "1", "fault": "1", "not_reporting": "1"} | {
        "out_of_service": "1",
        "disabled": "1",
    }
    # one site, one state
    gz01 = _tiles(client.get("/console/terminals", params={"site": "GZ01"}).text)
    assert set(gz01) == {"GZ-OK", "GZ-WARN", "GZ-OOS"}
    faults = _tiles(client.get("/console/terminals", params={"state": "fault"}).text)
    assert faults == {"GZ-FAULT": "fault"}
    bad = client.get("/console/terminals", params={"state": "purple"})
    assert bad.status_code == 422
    assert client.get("/console/terminals", params={"site": "SZ01"}).status_code == 404
    # the menu leads there; roles without terminals.read neither see it nor get in
    assert 'href="/console/terminals"' in page.text
    client.cookies.clear()
    login("gz01.agent")
    assert 'href="/console/terminals"' not in client.get("/console/").text
    assert client.get("/console/terminals").status_code == 403


def test_a_terminals_page_shows_devices_box_alarms_commands_and_its_chart(
    client, login, kiosks, engine
):
    login("gz.ops")
    page = client.get("/console/terminals/kiosks/GZ-WARN")
    assert page.status_code == 200
    html = page.text
    assert 'data-state="warning"' in html and "2.1.0" in html
    assert "paper_low" in html and "¥100.00" in html and "¥300.00" in html  # 3 × ¥100
    assert "4/1000张" in html  # notes in the box out of its capacity
    data = json.loads(re.search(r'id="dashboard-data">(.*?)</script>', html, re.S).group(1))
    chart = data["charts"][0]
    # One day: it was registered today (the chart does not show days before as downtime)
    assert chart["kind"] == "bar" and chart["categories"] == ["2026-11-26"]
    # able all its 60 s in service today (registered 30 s into the day, reported at once)
    assert chart["series"][0]["values"] == [pytest.approx(100.0)]
    assert "<canvas" not in html and 'id="chart-availability"' in html
    # another city's terminal and a missing one: the 404 page
    assert client.get("/console/terminals/kiosks/SZ-OK").status_code == 404
    assert client.get("/console/terminals/kiosks/NOPE").status_code == 404


def test_alarms_are_acknowledged_and_cleared_with_a_note(client, login, kiosks, engine):
    [alarm] = _live_alarms(engine, "GZ-WARN")
    login("gz.ops")
    listing = client.get("/console/terminals/alarms")
    assert f'data-alarm="{alarm.alarm_id}"' in listing.text
    assert "GZ-FAULT" in listing.text and "SZ-OK" not in listing.text
    url = f"/console/terminals/alarms/{alarm.alarm_id}"
    # no CSRF token: refused, nothing changed
    refused = client.post(f"{url}/acknowledge", data={"note": "x"})
    assert refused.status_code == 403 and _live_alarms(engine, "GZ-WARN")[0].status == "open"
    token = _token(client)
    done = client.post(
        f"{url}/acknowledge",
        data={"csrf_token": token, "note": "paper on its way"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"].endswith("done=acknowledged")
    [acked] = _live_alarms(engine, "GZ-WARN")
    assert acked.status == "acknowledged" and acked.note == "paper on its way"
    again = client.post(f"{url}/acknowledge", data={"csrf_token": token})
    assert again.status_code == 409 and 'class="message error"' in again.text
    # cleared from the terminal's own page, which it comes back to
    cleared = client.post(
        f"{url}/clear",
        data={"csrf_token": token, "note": "refilled", "back": "GZ-WARN"},
        follow_redirects=False,
    )
    assert cleared.headers["location"] == "/console/terminals/kiosks/GZ-WARN?done=cleared"
    assert _live_alarms(engine, "GZ-WARN") == []
    assert "已清除" in client.get("/console/terminals/alarms", params={"status": "cleared"}).text
    # a note too long is the service's message in the page, nothing changed
    [fault] = _live_alarms(engine, "GZ-FAULT")
    long = client.post(
        f"/console/terminals/alarms/{fault.alarm_id}/clear",
        data={"csrf_token": token, "note": "x" * 501},
    )
    assert long.status_code == 422 and _live_alarms(engine, "GZ-FAULT")[0].status == "open"
    # read-only staff see no buttons and cannot post
    client.cookies.clear()
    login("gz.manager")
    page = client.get("/console/terminals/alarms")
    assert page.status_code == 200 and "确认</button>" not in page.text
    post = client.post(
        f"/console/terminals/alarms/{fault.alarm_id}/clear", data={"csrf_token": _token(client)}
    )
    assert post.status_code == 403 and _live_alarms(engine, "GZ-FAULT")[0].status == "open"


def test_remote_commands_are_queued_and_cancelled(client, login, kiosks, engine):
    login("gz.ops")
    token = _token(client)
    url = "/console/terminals/kiosks/GZ-OK/commands"
    queued = client.post(
        url, data={"csrf_token": token, "command_type": "restart"}, follow_redirects=False
    )
    assert queued.status_code == 303
    [command] = _commands(engine, "GZ-OK")
    assert command.type == "restart" and command.status == "pending"
    page = client.get("/console/terminals/kiosks/GZ-OK?done=queued")
    assert "指令已排队" in page.text and 'data-command-status="pending"' in page.text
    bad = client.post(url, data={"csrf_token": token, "command_type": "self_destruct"})
    assert bad.status_code == 422 and "self_destruct" in bad.text
    assert len(_commands(engine, "GZ-OK")) == 1
    cancelled = client.post(
        f"{url}/{command.command_id}/cancel",
        data={"csrf_token": token, "reason": "not needed"},
        follow_redirects=False,
    )
    assert cancelled.status_code == 303
    assert _commands(engine, "GZ-OK")[0].status == "cancelled"
    assert client.post(url.replace("GZ-OK", "SZ-OK"), data={"csrf_token": token}).status_code == 404
    client.cookies.clear()
    login("gz.manager")
    assert "发送指令" not in client.get("/console/terminals/kiosks/GZ-OK").text
    refused = client.post(url, data={"csrf_token": _token(client), "command_type": "restart"})
    assert refused.status_code == 403 and len(_commands(engine, "GZ-OK")) == 1


def test_collections_and_finance_exceptions(client, login, kiosks, engine, frozen_clock):
    collect_short(engine)
    login("gz.ops")
    page = client.get("/console/terminals/cash")
    assert page.status_code == 200
    assert "BOX-1 → BOX-2" in page.text and "长款" in page.text and "¥50.00" in page.text
    assert "处理</button>" not in page.text  # payments.reconcile is finance's
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        [exception] = cash.list_exceptions(uow)
    url = f"/console/terminals/cash/exceptions/{exception.exception_id}/resolve"
    assert client.post(url, data={"csrf_token": _token(client), "note": "x"}).status_code == 403
    client.cookies.clear()
    login("finance", code=totp_now(frozen_clock))
    token = _token(client, "/console/terminals/cash")
    empty = client.post(url, data={"csrf_token": token, "note": " "})
    assert empty.status_code == 422 and "请说明差错的处理方式" in empty.text
    resolved = client.post(
        url, data={"csrf_token": token, "note": "counted again"}, follow_redirects=False
    )
    assert resolved.status_code == 303
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        assert cash.list_exceptions(uow) == []
    shown = client.get("/console/terminals/cash", params={"exceptions": "resolved"}).text
    assert "counted again" in shown
    assert client.get("/console/terminals/cash", params={"since": "yesterday"}).status_code == 422


def test_alarm_and_collection_exports_are_audited(client, login, kiosks, engine):
    collect_short(engine)
    login("gz.ops")
    alarms_csv = client.get("/console/terminals/alarms/export/csv", params={"status": "all"})
    assert alarms_csv.status_code == 200 and alarms_csv.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(alarms_csv.content.decode("utf-8-sig"))))
    assert rows[0][0] == "终端" and {r[0] for r in rows[1:]} == {"GZ-WARN", "GZ-FAULT"}
    xlsx = client.get("/console/terminals/cash/export/xlsx")
    assert xlsx.status_code == 200
    with zipfile.ZipFile(io.BytesIO(xlsx.content)) as book:
        assert "BOX-2" in book.read("xl/worksheets/sheet1.xml").decode()
    collections_csv = client.get("/console/terminals/cash/export/csv").content.decode("utf-8-sig")
    assert "GZ-OK,BOX-1,BOX-2,op-7" in collections_csv and ",0.0,50.0,50.0," in collections_csv
    assert len(_exports(engine, "terminal_alarms")) == 1
    assert len(_exports(engine, "terminal_collections")) == 2
    assert client.get("/console/terminals/alarms/export/pdf").status_code == 404


def test_versions_and_availability(client, login, kiosks):
    login("gz.ops")
    versions = client.get("/console/terminals/versions").text
    rows = dict(re.findall(r'data-version="([^"]*)">.*?<td class="num">(\d+)</td>', versions, re.S))
    # GZ-SILENT never reported: its version is still empty
    assert rows == {"2.1.0": "4", "2.2.0": "1", "": "1"}
    page = client.get("/console/terminals/availability")
    assert page.status_code == 200
    data = json.loads(re.search(r'id="dashboard-data">(.*?)</script>', page.text, re.S).group(1))
    values = data["charts"][0]["series"][0]["values"]
    # Only today: the days before the kiosks were registered are not days of downtime.
    assert data["charts"][0]["categories"] == ["2026-11-26"]
    # today: GZ-OK and GZ-WARN able all their 60 s; the fault, the silent, the stopped not
    assert values == [pytest.approx(100 * 2 / 6, abs=0.1)]
    means = dict(re.findall(r'>([A-Z-]+)</a></th><td class="num">([\d.]+)</td>', page.text))
    assert means["GZ-OK"] == "100.0" and means["GZ-FAULT"] == "0.0" and "SZ-OK" not in means
    site = client.get("/console/terminals/availability", params={"site": "GZ01"}).text
    assert "GZ-OK" in site and "GZ-FAULT" not in site


def test_the_fleet_pages_in_both_languages(client, login, kiosks):
    login("gz.ops")
    pages = [
        "/console/terminals",
        "/console/terminals?site=GZ01",
        "/console/terminals/kiosks/GZ-WARN",
        "/console/terminals/alarms",
        "/console/terminals/cash",
        "/console/terminals/versions",
        "/console/terminals/availability",
    ]
    zh = catalog("zh-CN")
    english = sorted(
        (m for m, t in zh.items() if m != t and "{" not in m and len(m) > 12),
        key=len,
        reverse=True,
    )
    for path in pages:
        html = client.get(path).text
        text = re.sub(r"<[^>]+>", " ", html)
        assert not [m for m in english if m in text], path
    client.post(
        "/console/language",
        data={"locale": "en", "next": "/console/terminals", "csrf_token": _token(client)},
    )
    for path in pages:
        html = client.get(path).text
        assert '<html lang="en">' in html
        ui = re.sub(r"<(td|h1|dd|title|h3|option)[^>]*>.*?</\1>", "", html, flags=re.S)
        ui = re.sub(r'<span class="user".*?</span>', "", ui, flags=re.S)
        ui = re.sub(r'<button[^>]*lang="zh-CN"[^>]*>.*?</button>', "", ui, flags=re.S)
        ui = re.sub(r'<script type="application/json".*?</script>', "", ui, flags=re.S)
        assert not re.search(r"[\u4e00-\u9fff]{2,}", re.sub(r"<[^>]+>", " ", ui)), path


def test_the_cash_page_lists_the_boxes_in_the_kiosks(client, login, kiosks):
    login("gz.ops")
    html = client.get("/console/terminals/cash").text
    section = html.split('id="boxes-title"')[1].split("</section>")[0]
    boxes = re.findall(r'<td class="mono"><a href="/console/terminals/kiosks/([A-Z-]+)"', section)
    # every Guangzhou kiosk that reported (not the silent one, not Shenzhen's)
    assert sorted(boxes) == ["GZ-FAULT", "GZ-OFF", "GZ-OK", "GZ-OOS", "GZ-WARN"]
    assert "终端内钱箱" in html and "4/1000张" in section and "¥350.00" in section
    one = client.get("/console/terminals/cash", params={"terminal": "GZ-OK"}).text
    assert re.findall(r'data-box="([^"]+)"', one) == ["BOX-1"]
