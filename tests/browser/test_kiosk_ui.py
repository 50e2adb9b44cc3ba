"""The kiosk's touch UI in Chromium (Playwright): a cash payment and a card payment walked
on the screen with the demo panel playing the customer's hands, the English switch and
the idle timeout. The kiosk runs as ``teleserve kiosk`` does, against the real gateway
and money writer (``tests.kiosk.ui_harness``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from tests.gateway.test_customer_handlers import fresh_throttle, people  # noqa: F401
from tests.kiosk.conftest import register, terminal, tree  # noqa: F401 (fixtures)
from tests.kiosk.ui_harness import (
    NUMBER,
    START_BALANCE,
    KioskProcess,
    payments_of,
    real_gateway,  # noqa: F401 (fixture)
    start_kiosk,  # noqa: F401 (fixture)
)

KIOSK_SCREEN = {"width": 1280, "height": 1024}
Screens = tuple[KioskProcess, Page, Page]


@pytest.fixture
def open_kiosk(
    browser: Any,
    start_kiosk: Callable[..., KioskProcess],  # noqa: F811
) -> Iterator[Callable[..., Screens]]:
    """The kiosk's screen and, in a window of its own, its demo panel (a background tab
    gets no animation frames, and Playwright waits for them before each click)."""
    contexts: list[Any] = []

    def window(kiosk: KioskProcess) -> Page:
        context = browser.new_context(base_url=kiosk.url, viewport=KIOSK_SCREEN)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page: Page = context.new_page()
        return page

    def factory(**ui_settings: Any) -> Screens:
        kiosk = start_kiosk(**ui_settings)
        screen, panel = window(kiosk), window(kiosk)
        panel.goto("/panel")
        screen.goto("/")
        return kiosk, screen, panel

    yield factory
    for context in contexts:
        context.close()


def type_on_keypad(screen: Page, keypad: str, text: str) -> None:
    for key in text:
        screen.click(f"[data-keypad-for={keypad}] [data-key='{key}']")


def choose_number(screen: Page, tile: str) -> None:
    screen.get_by_test_id(tile).click()
    type_on_keypad(screen, "msisdn", NUMBER)
    expect(screen.locator("#msisdn")).to_have_value(NUMBER)
    screen.get_by_test_id("next").click()
    expect(screen.get_by_test_id("number")).to_have_text("138****8000")
    expect(screen.get_by_test_id("owner")).to_have_text("张*")
    screen.get_by_test_id("confirm").click()


def test_cash_payment_on_the_touch_screen(open_kiosk: Callable[..., Screens], engine: Engine):
    _, screen, panel = open_kiosk()
    assert screen.get_attribute("html", "lang") == "zh-CN"
    choose_number(screen, "tile-cash")
    screen.wait_for_url("**/pay/cash/insert")
    expect(screen.get_by_test_id("pay")).to_be_disabled()
    for _ in range(2):
        panel.get_by_test_id("note-5000").click()
        expect(panel.get_by_test_id("panel-result")).to_have_text("完成")
    # The escrow total follows the notes without a reload.
    expect(screen.get_by_test_id("escrow-total")).to_have_text("100.00")
    expect(screen.get_by_test_id("escrow-notes")).to_have_text("¥50.00 × 2")
    screen.get_by_test_id("pay").click()
    screen.wait_for_url("**/receipt")

    [row] = payments_of(engine)
    assert (row.channel, row.amount, row.status) == ("kiosk_cash", 10000, "completed")
    expect(screen.locator("h1")).to_have_text("缴费成功")
    expect(screen.get_by_test_id("number")).to_have_text("138****8000")
    expect(screen.get_by_test_id("amount")).to_have_text("¥100.00")
    expect(screen.get_by_test_id("txn-id")).to_have_text(row.receipt_no)
    expect(screen.get_by_test_id("balance")).to_have_text(f"¥{(START_BALANCE + 10000) // 100}.00")
    expect(screen.get_by_test_id("printed")).to_be_visible()
    # The sim printer's paper, on the panel.
    panel.reload()
    expect(panel.get_by_test_id("printed-receipt").first).to_contain_text(row.receipt_no)
    screen.get_by_test_id("done").click()
    expect(screen.get_by_test_id("tile-cash")).to_be_visible()


def test_card_payment_on_the_touch_screen(open_kiosk: Callable[..., Screens], engine: Engine):
    _, screen, panel = open_kiosk()
    choose_number(screen, "tile-card")
    screen.wait_for_url("**/pay/card/amount")
    type_on_keypad(screen, "amount", "88.5")
    screen.get_by_test_id("next").click()
    expect(screen.get_by_test_id("amount")).to_have_text("¥88.50")
    panel.get_by_test_id("insert-card").click()
    expect(panel.get_by_test_id("panel-result")).to_have_text("完成")
    screen.get_by_test_id("pay").click()
    screen.wait_for_url("**/receipt")

    [row] = payments_of(engine)
    assert (row.channel, row.amount, row.status) == ("kiosk_card", 8850, "completed")
    expect(screen.get_by_test_id("number")).to_have_text("138****8000")
    expect(screen.get_by_test_id("amount")).to_have_text("¥88.50")
    expect(screen.get_by_test_id("txn-id")).to_have_text(row.receipt_no)
    expect(screen.get_by_test_id("receipt-lines")).to_contain_text(row.receipt_no)


def test_english_switch_and_large_targets(open_kiosk: Callable[..., Screens]):
    _, screen, _ = open_kiosk()
    expect(screen.get_by_test_id("tile-cash")).to_contain_text("现金缴费")
    screen.get_by_test_id("lang").click()
    expect(screen.locator("html")).to_have_attribute("lang", "en")
    expect(screen.get_by_test_id("tile-cash")).to_contain_text("Pay by cash")
    screen.get_by_test_id("tile-cash").click()
    expect(screen.locator("label[for=msisdn]")).to_have_text("Enter the number to pay for")
    # Every control on the keypad screen is a touch target of at least 64 × 64 px.
    for control in screen.locator("button:visible, a.tile:visible").all():
        box = control.bounding_box()
        assert box is not None and box["width"] >= 64 and box["height"] >= 64, control
    screen.get_by_test_id("lang").click()
    expect(screen.locator("label[for=msisdn]")).to_have_text("请输入要缴费的号码")


def test_the_idle_timeout_returns_home(open_kiosk: Callable[..., Screens]):
    kiosk, screen, _ = open_kiosk(idle_timeout_s=2)
    screen.get_by_test_id("lang").click()
    screen.get_by_test_id("tile-cash").click()
    screen.wait_for_url("**/pay/cash")
    # Touches keep the session: four seconds of typing, two-second timeout.
    for key in "13800138":
        screen.click(f"[data-keypad-for=msisdn] [data-key='{key}']")
        screen.wait_for_timeout(500)
    assert screen.url.endswith("/pay/cash")
    # Then nobody touches the screen.
    screen.wait_for_url(kiosk.url + "/", timeout=10_000)
    expect(screen.get_by_test_id("flash")).to_contain_text("长时间未操作")
    expect(screen.locator("html")).to_have_attribute("lang", "zh-CN")
