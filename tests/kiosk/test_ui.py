"""The touch UI over HTTP (httpx) against the real server: cash and card payments with
their receipts, login and the account summary, reprint, functions disabled by faults,
the idle timeout, the language switch, bad input, and the UI's own guards."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import Engine

from teleserve.kiosk.devices.base import CashInState
from teleserve.kiosk.ui.settings import UiSettings
from teleserve.kiosk.ui.state import KioskUi
from tests.gateway.test_customer_handlers import PASSWORD, fresh_throttle, people  # noqa: F401

from .ui_harness import (
    NUMBER,
    PAN,
    START_BALANCE,
    KioskProcess,
    client_for,
    payments_of,
    real_gateway,  # noqa: F401 (fixture)
    start_kiosk,  # noqa: F401 (fixture)
)

StartKiosk = Callable[..., KioskProcess]


def flash(page: httpx.Response) -> str:
    found = re.search(r'data-testid="flash">([^<]*)<', page.text)
    return found.group(1) if found else ""


def to_insert_screen(http: httpx.Client) -> None:
    page = http.post("/pay/cash", data={"msisdn": NUMBER})
    assert page.url.path == "/pay/cash/confirm", flash(page)
    assert "138****8000" in page.text and "张*" in page.text
    assert NUMBER not in page.text  # never the full number on the screen
    assert http.post("/pay/cash/confirm").url.path == "/pay/cash/insert"


def test_cash_payment_with_its_receipt(start_kiosk: StartKiosk, engine: Engine):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        home = http.get("/")
        assert 'lang="zh-CN"' in home.text and "现金缴费" in home.text
        to_insert_screen(http)
        assert http.get("/pay/cash/escrow").json()["total_fen"] == 0
        for _ in range(2):  # the demo panel plays the customer
            assert http.post("/panel/note", data={"value": "5000"}).url.query == b"result=ok"
        assert http.get("/pay/cash/escrow").json() == {
            "open": True,
            "total_fen": 10000,
            "total": "100.00",
            "notes": [{"value": "50.00", "count": 2}],
        }
        receipt = http.post("/pay/cash/confirm-notes")
        assert receipt.url.path == "/receipt"
        # Reloading the receipt, or pressing Pay again, pays nothing twice.
        assert http.get("/receipt").text == receipt.text
        assert http.post("/pay/cash/confirm-notes").url.path == "/receipt"
        home = http.post("/end")
        assert home.url.path == "/" and "现金缴费" in home.text

    [row] = payments_of(engine)
    assert (row.channel, row.amount, row.status) == ("kiosk_cash", 10000, "completed")
    text = receipt.text
    assert "缴费成功" in text and "138****8000" in text and "¥100.00" in text
    assert f'data-testid="txn-id">{row.receipt_no}<' in text
    assert f"¥{(START_BALANCE + 10000) // 100}.00" in text  # the balance after
    # The server's receipt lines, printed by the sim printer and shown on the screen.
    [printed] = kiosk.panel.printer.printed
    assert any(row.receipt_no in line for line in printed)
    assert all(line in text for line in printed if "<" not in line and "&" not in line)
    assert kiosk.panel.cash.box == {5000: 2}


def test_cancelling_a_cash_payment_returns_the_notes(start_kiosk: StartKiosk, engine: Engine):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        to_insert_screen(http)
        http.post("/panel/note", data={"value": "2000"})
        # Home (or going back) keeps sending the customer back while notes are in escrow.
        for path in ("/", "/pay/cash", "/pay/card", "/pay/cash/confirm"):
            assert http.get(path).url.path == "/pay/cash/insert", path
        assert http.post("/pay/cash/confirm").url.path == "/pay/cash/insert"
        assert kiosk.panel.cash.state is CashInState.ACTIVE
        page = http.post("/pay/cash/cancel")
        assert page.url.path == "/" and "请取回您的纸币" in flash(page)
        assert http.get("/pay/cash/escrow").json() == {"open": False}
    assert kiosk.panel.cash.returned == [{2000: 1}]
    assert payments_of(engine) == []


def test_card_payment_and_a_declined_card(start_kiosk: StartKiosk, engine: Engine):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        page = http.post("/pay/card", data={"msisdn": NUMBER})
        assert page.url.path == "/pay/card/confirm"
        assert http.post("/pay/card/confirm").url.path == "/pay/card/amount"
        for bad, message in (
            ("abc", "请输入以元为单位的金额"),
            ("0", "金额必须大于零"),
            ("5000.01", "¥5000.00"),
            ("1.234", "请输入以元为单位的金额"),
        ):
            page = http.post("/pay/card/amount", data={"amount": bad})
            assert page.url.path == "/pay/card/amount" and message in flash(page), bad
        page = http.post("/pay/card/amount", data={"amount": "30.5"})
        assert page.url.path == "/pay/card/card" and "¥30.50" in page.text
        # No card in the reader.
        page = http.post("/pay/card/pay")
        assert page.url.path == "/pay/card/card" and "未读到银行卡" in flash(page)
        # Declined by the acquirer: nothing reaches the server.
        http.post("/panel/decline")
        http.post("/panel/card")
        page = http.post("/pay/card/pay")
        assert page.url.path == "/pay/card/card" and "银行卡交易被拒绝" in flash(page)
        assert payments_of(engine) == []
        http.post("/panel/clear")
        http.post("/panel/card", data={"pan": PAN})
        receipt = http.post("/pay/card/pay")
        assert receipt.url.path == "/receipt", flash(receipt)
        assert http.post("/pay/card/pay").url.path == "/receipt"  # pressed twice
    [row] = payments_of(engine)
    assert (row.channel, row.amount, row.status) == ("kiosk_card", 3050, "completed")
    assert "¥30.50" in receipt.text and row.receipt_no in receipt.text
    assert PAN not in receipt.text


def test_login_account_summary_and_logout(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        assert http.get("/account").url.path == "/account/login"  # not logged in
        page = http.post("/account/login", data={"msisdn": NUMBER, "password": "12"})
        assert "六位数字" in flash(page)
        page = http.post("/account/login", data={"msisdn": NUMBER, "password": "000000"})
        assert page.url.path == "/account/login" and flash(page)  # the server's 20001 text
        page = http.post("/account/login", data={"msisdn": NUMBER, "password": PASSWORD})
        assert page.url.path == "/account", flash(page)
        assert "138****8000" in page.text and "¥50.00" in page.text and "正常" in page.text
        assert kiosk.agent.customer.customer_token is not None
        # Home returns a logged-in customer to their account.
        assert http.get("/").url.path == "/account"
        page = http.post("/account/logout")
        assert page.url.path == "/" and "您已退出登录" in flash(page)
    assert kiosk.agent.customer.customer_token is None


def test_reprint_by_serial_and_the_last_payment(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        page = http.get("/reprint")
        assert 'data-testid="reprint-last"' not in page.text  # nothing paid yet
        to_insert_screen(http)
        http.post("/panel/note", data={"value": "10000"})
        receipt = http.post("/pay/cash/confirm-notes")
        serial = re.search(r'data-testid="serial">(\d+)<', receipt.text)
        assert serial is not None
        http.post("/end")
        page = http.post("/reprint", data={"serial": "x"})
        assert page.url.path == "/reprint" and "流水号" in flash(page)
        page = http.post("/reprint", data={"serial": "999999"})
        assert page.url.path == "/reprint" and flash(page)  # 20008 from the server
        page = http.post("/reprint", data={"serial": serial.group(1)})
        assert page.url.path == "/reprint/done", flash(page)
        http.post("/end")
        page = http.get("/reprint")
        assert f"流水号 {serial.group(1)}" in page.text
        page = http.post("/reprint", data={"last": "1"})
        assert page.url.path == "/reprint/done"
    first, again, last = kiosk.panel.printer.printed
    assert again == last and "重印 REPRINT" in again  # the same reprint, twice
    assert set(first) < set(again)  # the original's lines, marked as a reprint


def test_faults_grey_out_functions_with_the_reason(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        http.post("/panel/jam")
        http.post("/panel/paper", data={"level": "out"})
        home = http.get("/")
        cash = re.search(r'data-testid="tile-cash">(.*?)</div>', home.text, re.S)
        assert cash is not None and "卡币" in cash.group(1) and "href" not in cash.group(1)
        reprint = re.search(r'data-testid="tile-reprint">(.*?)</div>', home.text, re.S)
        assert reprint is not None and "缺纸" in reprint.group(1)
        assert 'href="/pay/card"' in home.text  # the card still works
        # Going around the tile: the flow refuses and says why.
        page = http.post("/pay/cash", data={"msisdn": NUMBER})
        page = http.post("/pay/cash/confirm")
        assert page.url.path == "/" and "卡币" in flash(page)
        assert kiosk.panel.cash.state is not CashInState.ACTIVE
        http.post("/panel/clear")
        assert 'href="/pay/cash"' in http.get("/").text


def test_out_of_service_screen(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk()

    async def out_of_service() -> None:
        kiosk.agent.out_of_service = True

    kiosk.call(out_of_service())
    with client_for(kiosk) as http:
        page = http.get("/")
        assert "本终端暂停服务" in page.text and "tile-cash" not in page.text
        page = http.post("/pay/cash", data={"msisdn": NUMBER})
        assert page.url.path == "/" and "本终端暂停服务" in page.text


def test_idle_timeout_ends_the_session_and_returns_the_escrow(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk(idle_timeout_s=1, idle_grace_s=0)
    with client_for(kiosk) as http:
        http.post("/lang", data={"locale": "en", "next": "/"})
        to_insert_screen(http)
        http.post("/panel/note", data={"value": "1000"})
        deadline = time.monotonic() + 10
        while http.get("/pay/cash/escrow").json()["open"]:  # the server's watchdog ends it
            assert time.monotonic() < deadline, "the idle session was not ended"
            time.sleep(0.2)
        page = http.get("/")
        # Back in the default language, for the next customer.
        assert 'lang="zh-CN"' in page.text and "长时间未操作" in flash(page)
    assert kiosk.panel.cash.returned == [{1000: 1}]


def test_the_idle_timeout_logs_out(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk(idle_timeout_s=60)
    with client_for(kiosk) as http:
        page = http.post("/account/login", data={"msisdn": NUMBER, "password": PASSWORD})
        assert page.url.path == "/account"
        page = http.post("/timeout")  # what the screen's own timer posts
        assert page.url.path == "/" and "长时间未操作" in flash(page)
    assert kiosk.agent.customer.customer_token is None


def test_english_switch_on_every_screen(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        for path in ("/", "/pay/cash", "/pay/card", "/account/login", "/reprint"):
            page = http.get(path)
            assert 'data-testid="lang"' in page.text and 'value="en"' in page.text, path
        page = http.post("/lang", data={"locale": "en", "next": "/pay/cash"})
        assert page.url.path == "/pay/cash" and 'lang="en"' in page.text
        assert "Enter the number to pay for" in page.text
        page = http.post("/pay/cash", data={"msisdn": "12ab"})
        assert "digits only" in flash(page)
        # Only local paths: no open redirect.
        assert http.post("/lang", data={"locale": "zh-CN", "next": "//evil.example/"}).url == (
            httpx.URL(kiosk.url + "/")
        )


def test_bad_number_and_unpayable_number(start_kiosk: StartKiosk, engine: Engine):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        page = http.post("/pay/cash", data={"msisdn": "12"})
        assert page.url.path == "/pay/cash" and "仅限数字" in flash(page)
        page = http.post("/pay/cash", data={"msisdn": "13600136000"})  # no such line
        assert page.url.path == "/pay/cash" and "无法为该号码缴费" in flash(page)
        # Nothing was opened: the confirm step has no number to pay for.
        assert http.get("/pay/cash/confirm").url.path == "/"

    async def open_cash_in() -> str | None:
        return kiosk.agent.journal.cash_in()

    assert kiosk.call(open_cash_in()) is None
    assert payments_of(engine) == []


def test_the_ui_refuses_other_hosts_and_cross_site_posts(start_kiosk: StartKiosk):  # noqa: F811
    kiosk = start_kiosk()
    with client_for(kiosk) as http:
        assert http.get("/", headers={"Host": "evil.example"}).status_code == 400
        refused = http.post("/end", headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
        assert http.post("/end", headers={"Origin": kiosk.url}).status_code == 200
        assert http.get("/static/kiosk.css").status_code == 200
        assert http.post("/panel/nonsense").status_code == 404


def test_a_busy_ui_port_is_a_configuration_error():
    from teleserve.kiosk.config import ConfigError
    from teleserve.kiosk.ui.server import bind_ui_socket

    taken = bind_ui_socket(0)
    try:
        taken.listen()
        with pytest.raises(ConfigError, match="cannot listen"):
            bind_ui_socket(taken.getsockname()[1])
    finally:
        taken.close()


def test_no_panel_without_simulated_devices():
    from teleserve.kiosk.ui.app import create_app

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=create_app(KioskUi(UiSettings())))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            assert (await http.get("/panel")).status_code == 404
            page = await http.get("/")  # no agent yet: starting
            assert "正在启动" in page.text

    asyncio.run(scenario())


def test_ui_settings_are_checked():
    from teleserve.kiosk.config import ConfigError

    with pytest.raises(ConfigError):
        UiSettings(idle_timeout_s=0)
    with pytest.raises(ConfigError):
        UiSettings(card_max_fen=0)
