"""Console pages of the reports domain: the dashboard and the export of each chart's data.

Templates: ``src/teleserve/web/templates/reports/``. The figures come from
``reports.service`` (the actor's subtree, ``reports.read``); the page embeds them as JSON
for ECharts (``static/dashboard.js``) and shows each chart's numbers in a table as well,
so they can be read without a canvas (screen readers, keyboard, no JavaScript). A chart
without data says so instead of drawing empty axes. The console's home page sends users
with ``reports.read`` here.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from teleserve.core.errors import NotFound
from teleserve.core.i18n import _
from teleserve.reports import service as reports
from teleserve.reports.service import Chart
from teleserve.web.console.page import ConsolePage, console_page
from teleserve.web.export import FORMATS, Cell, audit_export, export_response

router = APIRouter(prefix="/dashboard")


def _yuan(fen: int) -> float:
    return round(fen / 100, 2)


def chart_json(chart: Chart) -> dict[str, Any]:
    """What ``dashboard.js`` draws: labels already in the page's language, money in yuan."""
    return {
        "key": chart.key,
        "kind": chart.kind,
        "money": chart.money,
        "categories": [c.label for c in chart.categories],
        "series": [
            {
                "name": s.label,
                "values": [_yuan(v) if chart.money else v for v in s.values],
            }
            for s in chart.series
        ],
    }


def _sheet_name(title: str) -> str:
    """``title`` without the characters Excel refuses in a sheet name."""
    return re.sub(r"[\[\]:*?/\\]", " ", title)


def _rows(chart: Chart) -> list[list[Cell]]:
    rows: list[list[Cell]] = []
    for index, category in enumerate(chart.categories):
        row: list[Cell] = [category.key if chart.money else category.label]
        for series in chart.series:
            value = series.values[index]
            row.append(_yuan(value) if chart.money else value)
        rows.append(row)
    return rows


@router.get("", name="dashboard")
def dashboard(page: ConsolePage = Depends(console_page)) -> Response:
    page.actor.require(reports.READ)
    with page.uow(readonly=True) as uow:
        charts = reports.dashboard(uow)
    first, last = reports.payment_days()
    context = {
        "charts": charts,
        "chart_data": [chart_json(c) for c in charts],
        "formats": FORMATS,
        "first_day": first,
        "last_day": last,
        "yuan": _yuan,
    }
    return page.render("reports/dashboard.html", context)


@router.get("/export/{key}/{fmt}", name="dashboard_export")
def export(key: str, fmt: str, page: ConsolePage = Depends(console_page)) -> Response:
    """The data behind one chart, as on screen (money in yuan), audited."""
    if fmt not in FORMATS or key not in reports.CHARTS:
        raise NotFound(_("No such page"))
    page.actor.require(reports.READ)
    with page.uow() as uow:
        chart = reports.chart(uow, key)
        rows = _rows(chart)
        audit_export(uow, f"dashboard.{key}", fmt, len(rows), {"chart": key})
        uow.commit()
    headers = [chart.category_title] + [
        page.t(_("{series} (yuan)"), series=s.label) if chart.money else s.label
        for s in chart.series
    ]
    return export_response(fmt, f"{key}", headers, rows, sheet=_sheet_name(chart.title))
