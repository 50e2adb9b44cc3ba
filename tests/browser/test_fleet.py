"""The kiosk fleet in a real browser: the grid shows a coloured tile per terminal, and
ECharts draws the fleet's availability chart on a canvas."""

from __future__ import annotations

from sqlalchemy import text

from tests.console.fleet_support import EXPECTED_STATES, build_fleet

from .test_console import _log_in


def test_the_fleet_grid_and_the_availability_chart(page, server):
    with server.engine.connect() as conn:
        known = conn.scalar(text("SELECT count(*) FROM terminal WHERE terminal_id = 'GZ-OK'"))
    if not known:
        build_fleet(server.engine)
    _log_in(page, "gz.ops")  # terminal_ops of Guangzhou, no MFA
    page.wait_for_url("**/console/")
    page.click("nav.menu a[href='/console/terminals']")
    page.wait_for_url("**/console/terminals")
    tiles = page.locator("a.tile[data-terminal]")
    shown = {
        tiles.nth(i).get_attribute("data-terminal"): tiles.nth(i).get_attribute("data-state")
        for i in range(tiles.count())
    }
    assert shown == {k: v for k, v in EXPECTED_STATES.items() if k.startswith("GZ-")}
    # the colour is the state's, not only a word
    fault = page.locator("a.tile[data-terminal=GZ-FAULT]")
    ok = page.locator("a.tile[data-terminal=GZ-OK]")
    assert fault.evaluate("e => getComputedStyle(e).backgroundColor") != ok.evaluate(
        "e => getComputedStyle(e).backgroundColor"
    )
    page.click("nav.tabs a[href='/console/terminals/availability']")
    page.wait_for_selector("#chart-fleet_availability canvas")
    box = page.locator("#chart-fleet_availability canvas").first.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
