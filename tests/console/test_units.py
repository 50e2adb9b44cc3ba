"""Pieces of the console without a database: the search box's guess, exports, money,
redirect targets, and that the catalog test really reads the templates."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from teleserve.core.errors import ValidationError
from teleserve.customers.views import classify
from teleserve.web.console.page import safe_next
from teleserve.web.console.templating import TEMPLATES_DIR, money
from teleserve.web.export import csv_chunks, write_xlsx


@pytest.mark.parametrize(
    ("typed", "kind", "expected"),
    [
        ("440106199003071234", "auto", ("id_number", "440106199003071234")),
        ("44010619900307123x", "auto", ("id_number", "44010619900307123x")),
        ("C20261125000123", "auto", ("number", "C20261125000123")),
        ("138 0013-8000", "auto", ("service_number", "13800138000")),
        ("+86 13800138000", "auto", ("service_number", "13800138000")),
        ("  张  三 ", "auto", ("name", "张 三")),
        ("Acme", "auto", ("name", "Acme")),
        ("E12345678", "id_number", ("id_number", "E12345678")),
    ],
)
def test_the_search_box_recognises_what_was_typed(typed, kind, expected):
    assert classify(typed, kind) == expected


def test_an_unknown_search_kind_is_refused():
    with pytest.raises(ValidationError):
        classify("x", "everything")


def test_csv_has_a_bom_and_never_formulas():
    rows = [['=HYPERLINK("x")', 5, None], ["张*", -1, datetime(2026, 11, 25, 10, 15)]]
    data = b"".join(csv_chunks(["名称", "数量", "时间"], rows))
    assert data.startswith("\ufeff".encode())
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert parsed == [
        ["名称", "数量", "时间"],
        ['\'=HYPERLINK("x")', "5", ""],
        ["张*", "-1", "2026-11-25 10:15:00"],
    ]


def test_csv_streams_in_chunks():
    chunks = list(csv_chunks(["a"], ([str(i)] for i in range(1200))))
    assert len(chunks) == 3  # 500 + 500 + 200 rows


def test_xlsx_cells_are_text_or_numbers(tmp_path: Path):
    path = str(tmp_path / "x.xlsx")
    assert write_xlsx(path, ["名称", "数量"], [["=1+1", 3], ["张*", 2.5]], "客户") == 2
    with zipfile.ZipFile(path) as book:
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
        names = book.namelist()
    assert "<f>" not in sheet  # no formula anywhere
    assert "xl/worksheets/sheet1.xml" in names


def test_money_and_safe_redirects():
    assert money(12345) == "¥123.45"
    assert money(-5) == "-¥0.05"
    assert money(100_000_00) == "¥100,000.00"
    assert safe_next("/console/customers?q=1", "/console/") == "/console/customers?q=1"
    for bad in ("https://evil.example/", "//evil.example/console/", "/other", None, ""):
        assert safe_next(bad, "/console/") == "/console/"


def test_the_translation_test_reads_the_templates():
    found = [
        message
        for _f, _l, message, _c, _x in extract_from_dir(
            str(TEMPLATES_DIR), method_map=[("**.html", "jinja2")], keywords={"_": None}
        )
        if isinstance(message, str)
    ]
    assert "Log in to the staff console" in found and len(found) > 80
