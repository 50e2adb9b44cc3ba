"""Number-pool administration in the console: ranges by region with their numbers counted
by state, creating a range, grades and their fees, finding, reserving and cancelling,
the reservations and the quarantine, exports, permissions, scoping and both languages."""

from __future__ import annotations

import csv
import io
import re
import zipfile

from sqlalchemy import func, select

from teleserve.core.actor import SYSTEM
from teleserve.core.audit import AuditRecord
from teleserve.core.i18n import catalog as messages
from teleserve.core.uow import UnitOfWork
from teleserve.numbers import service as numbers
from teleserve.numbers.models import NumberRange, PoolNumber

from .conftest import totp_now

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GZ, SZ = "/TS/GD/GZ/", "/TS/GD/SZ/"


def _token(client, path="/console/numbers"):
    return CSRF.search(client.get(path).text).group(1)


def _admin(login, frozen_clock, username="gz.admin"):
    assert login(username, code=totp_now(frozen_clock)).status_code == 303


def _free(engine, org_path, count=1, ends_with=None):
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        return [
            n.value for n in numbers.search_free(uow, org_path, ends_with=ends_with, limit=count)
        ]


def _number(engine, value):
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        return numbers.get(uow, value)


def _range_id(engine, org_path):
    with engine.connect() as conn:
        return conn.scalar(select(NumberRange.id).where(NumberRange.org_path == org_path))


def _ranges(engine):
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(NumberRange))


def _exports(engine, what):
    with engine.connect() as conn:
        return conn.scalars(
            select(AuditRecord.detail).where(
                AuditRecord.action == "console.exported", AuditRecord.subject_id == what
            )
        ).all()


def _csv(response):
    assert response.status_code == 200 and response.content.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))


def _release_one(engine, org_path):
    """An assigned number of ``org_path`` released into quarantine; its value."""
    with engine.connect() as conn:
        value = conn.scalar(
            select(PoolNumber.value)
            .where(PoolNumber.status == "assigned", PoolNumber.org_path.startswith(org_path))
            .order_by(PoolNumber.value)
            .limit(1)
        )
    with UnitOfWork(engine, SYSTEM) as uow:
        numbers.release(uow, value)
        uow.commit()
    return value


def test_ranges_by_region_with_counts_and_exports(client, login, engine, frozen_clock):
    reserved = _free(engine, GZ)[0]
    with UnitOfWork(engine, SYSTEM) as uow:
        numbers.reserve(uow, reserved, "customer:C1")
        uow.commit()
    _release_one(engine, GZ)
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        counts = numbers.count_by_status(uow, GZ)
    assert all(counts.values())  # free, reserved, assigned and quarantined numbers
    _admin(login, frozen_clock)
    assert 'href="/console/numbers"' in client.get("/console/").text
    page = client.get("/console/numbers")
    assert page.status_code == 200
    html = page.text
    assert "广州市分公司" in html and "深圳市分公司" not in html  # the admin's own region only
    for status, count in counts.items():
        assert f'data-status="{status}">{count}<' in html, status
    range_id = _range_id(engine, GZ)
    assert f"/console/numbers/ranges/{range_id}" in html
    detail = client.get(f"/console/numbers/ranges/{range_id}")
    assert (
        detail.status_code == 200 and f'data-status="reserved">{counts["reserved"]}<' in detail.text
    )
    # filters: a kind with no range, an unknown kind
    assert "1380200" not in client.get("/console/numbers", params={"kind": "fixed"}).text
    bad = client.get("/console/numbers", params={"kind": "bogus"})
    assert bad.status_code == 200 and 'class="message error"' in bad.text
    rows = _csv(client.get("/console/numbers/ranges/export/csv"))
    assert rows[0][:2] == ["地区", "类型"] and len(rows) == 2
    assert rows[1][3] == "13802000000" and rows[1][6:10] == [str(counts[s]) for s in counts]
    book = client.get("/console/numbers/ranges/export/xlsx", params={"region": GZ})
    assert book.status_code == 200
    with zipfile.ZipFile(io.BytesIO(book.content)) as archive:
        assert "xl/worksheets/sheet1.xml" in archive.namelist()
    details = _exports(engine, "number_ranges")
    assert len(details) == 2 and all('"rows":1' in d for d in details)
    assert client.get("/console/numbers/ranges/export/pdf").status_code == 404


def test_another_regions_range_and_number_are_404(client, login, engine, frozen_clock):
    _admin(login, frozen_clock)
    sz_range = _range_id(engine, SZ)
    assert client.get(f"/console/numbers/ranges/{sz_range}").status_code == 404
    assert client.get("/console/numbers/ranges/" + "0" * 32).status_code == 404
    sz_number = _free(engine, SZ)[0]
    assert client.get("/console/numbers/reserve", params={"number": sz_number}).status_code == 404
    token = _token(client)
    refused = client.post(
        "/console/numbers/reserve",
        data={"number": sz_number, "holder": "customer:C1", "csrf_token": token},
    )
    assert refused.status_code == 404
    assert _number(engine, sz_number).status == "free"
    search = client.get("/console/numbers/search", params={"region": SZ}).text
    assert sz_number not in search
    # a hall sees none of its city's pool
    client.cookies.clear()
    login("gz01.agent")
    page = client.get("/console/numbers")
    assert page.status_code == 200 and "尚无号段" in page.text
    assert client.get(f"/console/numbers/ranges/{_range_id(engine, GZ)}").status_code == 404


def test_creating_a_range_and_its_refusals(client, login, engine, frozen_clock):
    _admin(login, frozen_clock)
    form = client.get("/console/numbers/ranges/new")
    assert (
        form.status_code == 200
        and f'value="{GZ}"' in form.text
        and f'value="{SZ}"' not in form.text
    )
    token = _token(client)
    before = _ranges(engine)
    fields = {"org_path": GZ, "kind": "mobile", "prefix": "1390020", "start": "0000"}
    overlapping = client.post(
        "/console/numbers/ranges/new",
        data={**fields, "prefix": "1380200", "end": "0099", "csrf_token": token},
    )
    assert overlapping.status_code == 409 and "已有的 100 个号码重叠" in overlapping.text
    assert 'value="1380200"' in overlapping.text  # what was typed stays
    elsewhere = client.post(
        "/console/numbers/ranges/new",
        data={**fields, "org_path": SZ, "end": "0099", "csrf_token": token},
    )
    assert elsewhere.status_code == 404 and 'class="message error"' in elsewhere.text
    uneven = client.post(
        "/console/numbers/ranges/new", data={**fields, "end": "99", "csrf_token": token}
    )
    assert uneven.status_code == 422 and 'class="message error"' in uneven.text
    assert _ranges(engine) == before
    created = client.post(
        "/console/numbers/ranges/new",
        data={**fields, "end": "0099", "name": "Tianhe 139", "csrf_token": token},
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    page = client.get(created.headers["location"])
    assert page.status_code == 200 and "Tianhe 139" in page.text and "已加入号码池" in page.text
    assert 'data-status="free">100<' in page.text
    assert _ranges(engine) == before + 1
    # an agent may not add ranges
    client.cookies.clear()
    login("sz01.agent")
    assert client.get("/console/numbers/ranges/new").status_code == 403
    refused = client.post(
        "/console/numbers/ranges/new",
        data={**fields, "prefix": "1390021", "end": "0099", "csrf_token": _token(client)},
    )
    assert refused.status_code == 403 and _ranges(engine) == before + 1


def test_grades_create_change_fees_and_export(client, login, engine, frozen_clock):
    _admin(login, frozen_clock)
    page = client.get("/console/numbers/grades")
    assert page.status_code == 200
    assert "tail_8888" in page.text and "¥10,000.00" in page.text and "普通号" in page.text
    token = _token(client, "/console/numbers/grades")
    grade = {
        "code": "lucky_1688",
        "name_zh": "尾号1688",
        "name_en": "Ending 1688",
        "pattern": "1688",
        "digits": "4",
        "premium_fee": "1680",
        "min_plan_fee": "58",
        "priority": "50",
    }
    created = client.post("/console/numbers/grades", data={**grade, "csrf_token": token})
    assert (
        created.status_code == 200 and "lucky_1688" in created.text and "¥1,680.00" in created.text
    )
    again = client.post("/console/numbers/grades", data={**grade, "csrf_token": token})
    assert again.status_code == 409 and "号码等级 lucky_1688 已存在" in again.text
    bad_code = client.post(
        "/console/numbers/grades", data={**grade, "code": "Bad Code", "csrf_token": token}
    )
    assert bad_code.status_code == 422 and "号码等级代码 Bad Code 无效" in bad_code.text
    bad_fee = client.post(
        "/console/numbers/grades",
        data={**grade, "code": "x2", "premium_fee": "-1", "csrf_token": token},
    )
    assert bad_fee.status_code == 422 and "靓号费（元）" in bad_fee.text
    assert 'value="x2"' in bad_fee.text
    # fees of an existing grade
    form = client.get("/console/numbers/grades/aaaa/fees")
    assert form.status_code == 200 and 'value="3000.00"' in form.text
    refused = client.post(
        "/console/numbers/grades/aaaa/fees",
        data={"premium_fee": "-5", "min_plan_fee": "0", "csrf_token": token},
    )
    assert refused.status_code == 422
    changed = client.post(
        "/console/numbers/grades/aaaa/fees",
        data={"premium_fee": "2000", "min_plan_fee": "128.5", "csrf_token": token},
    )
    assert changed.status_code == 200 and "¥2,000.00" in changed.text
    with UnitOfWork(engine, SYSTEM, readonly=True) as uow:
        fees = {g.code: (g.premium_fee, g.min_plan_fee) for g in numbers.list_grades(uow)}
    assert fees["aaaa"] == (200_000, 12_850) and fees["lucky_1688"] == (168_000, 5_800)
    assert "x2" not in fees
    assert client.get("/console/numbers/grades/ordinary/fees").status_code == 404
    assert client.get("/console/numbers/grades/nope/fees").status_code == 404
    rows = _csv(client.get("/console/numbers/grades/export/csv"))
    assert rows[0][0] == "代码" and "lucky_1688" in {r[0] for r in rows[1:]}
    assert len(_exports(engine, "number_grades")) == 1
    # an agent sees the grades but may not change them
    client.cookies.clear()
    login("sz01.agent")
    page = client.get("/console/numbers/grades")
    assert (
        page.status_code == 200 and "/fees" not in page.text and 'name="pattern"' not in page.text
    )
    refused = client.post(
        "/console/numbers/grades",
        data={**grade, "code": "x3", "csrf_token": _token(client, "/console/numbers/grades")},
    )
    assert refused.status_code == 403


def test_find_reserve_list_and_cancel(client, login, engine, frozen_clock):
    _admin(login, frozen_clock)
    search = client.get("/console/numbers/search", params={"pattern": "1380200*", "region": GZ})
    assert search.status_code == 200
    shown = re.findall(r'<td class="mono">(1380200\d{4})</td>', search.text)
    assert len(shown) == 50 and shown == sorted(shown)
    more = re.search(r'after=(\d+)" rel="next"', search.text).group(1)
    following = client.get(
        "/console/numbers/search", params={"pattern": "1380200*", "region": GZ, "after": more}
    ).text
    assert re.findall(r'<td class="mono">(1380200\d{4})</td>', following)[0] > shown[-1]
    graded = client.get("/console/numbers/search", params={"grade": "tail_8888", "region": GZ})
    assert "13802008888" in graded.text
    wrong = client.get("/console/numbers/search", params={"pattern": "13x"})
    assert wrong.status_code == 200 and 'class="message error"' in wrong.text
    rows = _csv(client.get("/console/numbers/search/export/csv", params={"ends_with": "8888"}))
    assert rows[0][0] == "号码" and [r[0] for r in rows[1:]] == ["13802008888"]
    # reserve one
    value = shown[0]
    form = client.get("/console/numbers/reserve", params={"number": value})
    assert form.status_code == 200 and 'name="holder"' in form.text
    token = _token(client)
    reserved = client.post(
        "/console/numbers/reserve",
        data={"number": value, "holder": "customer:C1", "minutes": "60", "csrf_token": token},
    )
    assert reserved.status_code == 200 and "已为 customer:C1 预占" in reserved.text
    assert value in reserved.text and "2026-11-25 11:00" in reserved.text  # local time
    assert _number(engine, value).holder == "customer:C1"
    # somebody else's reservation is refused in the form; a bad holder too
    taken = client.post(
        "/console/numbers/reserve",
        data={"number": value, "holder": "customer:C2", "csrf_token": token},
    )
    assert taken.status_code == 409 and 'class="message error"' in taken.text
    blank = client.post(
        "/console/numbers/reserve",
        data={"number": shown[1], "holder": "two words", "csrf_token": token},
    )
    assert blank.status_code == 422 and _number(engine, shown[1]).status == "free"
    assert _number(engine, value).holder == "customer:C1"
    listing = client.get("/console/numbers/reservations", params={"holder": "customer:C1"})
    assert value in listing.text and "2026-11-25 11:00" in listing.text
    rows = _csv(client.get("/console/numbers/reservations/export/csv"))
    assert rows[1][0] == value and rows[1][2] == "customer:C1"
    # cancelling needs the holder's name: a forged one is refused, nothing changes
    forged = client.post(
        "/console/numbers/reservations/cancel",
        data={"number": value, "holder": "customer:C2", "csrf_token": token},
    )
    assert forged.status_code == 409 and 'class="message error"' in forged.text
    assert _number(engine, value).status == "reserved"
    cancelled = client.post(
        "/console/numbers/reservations/cancel",
        data={"number": value, "holder": "customer:C1", "csrf_token": token},
    )
    assert cancelled.status_code == 200 and "已取消" in cancelled.text
    assert _number(engine, value).status == "free"
    assert (
        len(_exports(engine, "free_numbers")) == len(_exports(engine, "number_reservations")) == 1
    )


def test_quarantine_lists_release_dates(client, login, engine, frozen_clock):
    released = _release_one(engine, GZ)
    _release_one(engine, SZ)
    _admin(login, frozen_clock)
    page = client.get("/console/numbers/quarantine")
    assert page.status_code == 200
    assert released in page.text and "2027-02-23" in page.text  # 90 days on
    assert page.text.count('<td class="mono">') == 1  # not Shenzhen's
    rows = _csv(client.get("/console/numbers/quarantine/export/csv"))
    assert rows[1][0] == released and rows[1][2].startswith("2027-02-23")
    assert len(_exports(engine, "number_quarantine")) == 1


def test_permissions_follow_the_roles(client, login, engine, frozen_clock):
    login("gz.manager")  # dashboards: no number pool
    assert 'href="/console/numbers"' not in client.get("/console/").text
    for path in ("/console/numbers", "/console/numbers/grades", "/console/numbers/quarantine"):
        assert client.get(path).status_code == 403, path
    client.cookies.clear()
    _admin(login, frozen_clock, "auditor")  # reads everything, reserves nothing
    search = client.get("/console/numbers/search", params={"region": SZ})
    assert search.status_code == 200 and "/console/numbers/reserve?" not in search.text
    value = _free(engine, SZ)[0]
    refused = client.post(
        "/console/numbers/reserve",
        data={"number": value, "holder": "customer:C1", "csrf_token": _token(client)},
    )
    assert refused.status_code == 403 and _number(engine, value).status == "free"
    # without the CSRF token nothing happens
    client.cookies.clear()
    _admin(login, frozen_clock)
    gz_value = _free(engine, GZ)[0]
    forged = client.post(
        "/console/numbers/reserve", data={"number": gz_value, "holder": "customer:C1"}
    )
    assert forged.status_code == 403 and _number(engine, gz_value).status == "free"


def test_every_numbers_page_renders_in_both_languages(client, login, engine, frozen_clock):
    _release_one(engine, GZ)
    value = _free(engine, GZ)[0]
    with UnitOfWork(engine, SYSTEM) as uow:
        numbers.reserve(uow, value, "customer:C9")
        uow.commit()
    _admin(login, frozen_clock)
    pages = [
        "/console/numbers",
        "/console/numbers?kind=nope",
        f"/console/numbers/ranges/{_range_id(engine, GZ)}",
        "/console/numbers/ranges/new",
        "/console/numbers/grades",
        "/console/numbers/grades/aaaa/fees",
        "/console/numbers/search?ends_with=8888",
        "/console/numbers/search?pattern=x",
        f"/console/numbers/reserve?number={_free(engine, GZ)[0]}",
        "/console/numbers/reservations",
        "/console/numbers/quarantine",
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
    client.post(
        "/console/language", data={"locale": "en", "next": "/", "csrf_token": _token(client)}
    )
    for path in pages:
        html = client.get(path).text
        assert '<html lang="en">' in html, path
        assert not re.search(r"[\u4e00-\u9fff]{2,}", _ui_only(html)), path


def _ui_only(html: str) -> str:
    """The page's interface text: without data (org unit and grade names), the user's
    name and the switch to Chinese."""
    html = re.sub(
        r"<(td|dd|h1|title|option|th scope=\"row\")[^>]*>.*?</(td|dd|h1|title|option|th)>",
        "",
        html,
        flags=re.S,
    )
    html = re.sub(r'<span class="user".*?</span>', "", html, flags=re.S)
    html = re.sub(r"<(input|textarea)[^>]*>", "", html, flags=re.S)
    html = re.sub(r'<button[^>]*lang="zh-CN"[^>]*>.*?</button>', "", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)
