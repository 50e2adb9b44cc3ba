"""The dashboard in a real browser: ECharts draws a canvas for every chart with data, an
empty chart says so, and the figures open as a table from the keyboard."""

from __future__ import annotations

from .test_console import _log_in


def test_the_dashboard_draws_its_charts(page):
    _log_in(page, "gz.manager")  # reports.read: the dashboard is the home page
    page.wait_for_url("**/console/dashboard")
    for key in ("customers_by_unit", "lines_by_plan", "payments_by_day", "pool_by_region"):
        page.wait_for_selector(f"#chart-{key} canvas")
        box = page.locator(f"#chart-{key} canvas").first.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 100, key
    # the demo has no barred line: that chart is an honest message, not empty axes
    bars = page.locator("section[data-chart=open_bars]")
    assert bars.locator("canvas").count() == 0
    assert bars.locator("[data-testid=chart-empty]").inner_text() == "此图表暂无数据。"
    # the numbers behind a chart, opened with the keyboard
    summary = page.locator("section[data-chart=customers_by_unit] summary")
    summary.focus()
    page.keyboard.press("Enter")
    table = page.locator("section[data-chart=customers_by_unit] table")
    assert table.is_visible() and table.locator("tbody tr").count() == 3  # Guangzhou's halls
