"""The staff console in a real browser: MFA login, search (live results, by name, service
number and ID number), the 360° page, the language switch and exports."""

from __future__ import annotations

import io
import re
import zipfile

import pyotp

from teleserve.core.actor import SYSTEM
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.demo.seed import DEMO_PASSWORD, DEMO_TOTP_SECRET
from teleserve.inventory import service as inventory

from .conftest import customers_of

GZ01 = "/TS/GD/GZ/GZ01/"
HOME = re.compile(r"^https?://[^/]+/console/$")


def _log_in(page, username: str) -> None:
    page.goto("/console/")
    assert "/console/login" in page.url
    page.fill("#username", username)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]:has-text('登录')")


def test_login_with_mfa(page):
    _log_in(page, "admin")
    # the code step appears in place; the password stays in the form
    code = page.locator("#code")
    code.wait_for(state="visible")
    assert page.input_value("#password") == DEMO_PASSWORD
    code.fill(pyotp.TOTP(DEMO_TOTP_SECRET).now())
    page.click("button[type=submit]:has-text('登录')")
    page.wait_for_url("**/console/dashboard")  # the home page of reports.read users
    assert page.locator("h1").inner_text() == "仪表盘"
    assert page.locator("nav.menu >> text=员工与组织").count() == 1


def test_search_and_the_360_page(page, server):
    target = customers_of(server, GZ01)[0]
    with UnitOfWork(server.engine, SYSTEM) as uow:
        id_number = customers.reveal_id_number(uow, target.id)
        line = inventory.list_for_customer(uow, target.id)[0]
        uow.commit()
    _log_in(page, "gz01.agent")
    page.wait_for_url(HOME)
    # "/" jumps to the search box from anywhere
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "quick-q"
    page.keyboard.type(target.number)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/customers?q=*")
    link = page.locator(f"a[href='/console/customers/{target.id}']")
    assert link.count() == 1
    # live results: typing replaces the results without a page load
    for query in (line.service_number, id_number, target.name[:2]):
        page.fill("#q", query)
        page.wait_for_selector(f"#search-results a[href='/console/customers/{target.id}']")
    link.first.click()
    page.wait_for_url(f"**/console/customers/{target.id}")
    assert page.locator("h2:has-text('账户')").count() == 1
    balance = page.locator("[data-testid=balance]").first.inner_text()
    assert re.match(r"-?¥[\d,]+\.\d\d", balance)
    lines = page.locator("section[aria-labelledby=lines-title] tbody tr")
    assert lines.count() >= 1
    # the full ID number, revealed on request (and audited by the service)
    page.click("button:has-text('查看完整证件号码')")
    page.wait_for_selector(f"text={id_number}")


def test_switch_to_english(page):
    _log_in(page, "gz01.cashier")
    page.wait_for_url(HOME)
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.click("button:has-text('English')")
    page.wait_for_load_state()
    assert page.get_attribute("html", "lang") == "en"
    assert page.locator("h1").inner_text().startswith("Welcome")
    page.click("nav.menu >> text=Customers")
    page.wait_for_url("**/console/customers")
    assert page.locator("label[for=q]").inner_text().startswith("Name, service number")


def test_csv_and_xlsx_exports(page, server):
    target = customers_of(server, GZ01)[0]
    _log_in(page, "gz01.agent")
    page.wait_for_url(HOME)
    page.goto(f"/console/customers?q={target.name[0]}")
    with page.expect_download() as csv_download:
        page.click("a:has-text('导出 CSV')")
    data = csv_download.value.path().read_bytes()
    assert data.startswith("\ufeff".encode())
    text = data.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("客户编号")
    assert target.number in text
    with page.expect_download() as xlsx_download:
        page.click("a:has-text('导出 XLSX')")
    assert xlsx_download.value.suggested_filename.endswith(".xlsx")
    with zipfile.ZipFile(io.BytesIO(xlsx_download.value.path().read_bytes())) as book:
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
        strings = (
            book.read("xl/sharedStrings.xml").decode()
            if ("xl/sharedStrings.xml" in book.namelist())
            else sheet
        )
    assert "客户编号" in strings and target.number in strings
