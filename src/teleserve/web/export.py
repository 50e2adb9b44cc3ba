"""Exports of console lists: CSV and XLSX from rows and translated headers.

- CSV is UTF-8 with a byte-order mark: without it Excel on a Chinese Windows reads the
  file as GBK and shows mojibake. Streamed in chunks, never built whole in memory.
- XLSX is written by xlsxwriter in ``constant_memory`` mode (rows flushed to a temporary
  file as they are written), then streamed from that file, which is deleted afterwards.
- Cells are written as text or numbers, never as formulas: a value such as ``=HYPERLINK(…)``
  typed into a customer's name must not run in the spreadsheet of the clerk who exports it
  (CSV cells starting with ``= + - @`` get a leading apostrophe, as OWASP advises).
- Exports of personal data carry what the list shows (masked) and are audited with
  ``audit_export`` in the caller's unit of work.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

import xlsxwriter  # type: ignore[import-untyped]  # ships no type hints
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from teleserve.core.clock import utcnow
from teleserve.core.errors import NotFound
from teleserve.core.i18n import _
from teleserve.core.uow import UnitOfWork

Cell = str | int | float | date | datetime | None

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORMATS = ("csv", "xlsx")
_BOM = "\ufeff"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CHUNK_ROWS = 500
_READ_BYTES = 64 * 1024


def _text(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _csv_safe(value: Cell) -> str:
    text = _text(value)
    if isinstance(value, str) and text.startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_chunks(headers: Sequence[str], rows: Iterable[Sequence[Cell]]) -> Iterator[bytes]:
    """The CSV file in chunks: BOM and header first, then ``_CHUNK_ROWS`` rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(_BOM)
    writer.writerow([_csv_safe(h) for h in headers])
    for count, row in enumerate(rows, start=1):
        writer.writerow([_csv_safe(cell) for cell in row])
        if count % _CHUNK_ROWS == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def write_xlsx(
    path: str, headers: Sequence[str], rows: Iterable[Sequence[Cell]], sheet: str
) -> int:
    """Write the workbook to ``path``; returns the number of data rows."""
    workbook = xlsxwriter.Workbook(path, {"constant_memory": True})
    try:
        worksheet = workbook.add_worksheet(sheet[:31])
        bold = workbook.add_format({"bold": True})
        for col, header in enumerate(headers):
            worksheet.write_string(0, col, header, bold)
        count = 0
        for count, row in enumerate(rows, start=1):
            for col, cell in enumerate(row):
                if isinstance(cell, bool) or cell is None:
                    worksheet.write_string(count, col, _text(cell))
                elif isinstance(cell, int | float):
                    worksheet.write_number(count, col, cell)
                else:
                    worksheet.write_string(count, col, _text(cell))
        worksheet.freeze_panes(1, 0)
    finally:
        workbook.close()
    return count


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_BYTES):
            yield chunk


def _disposition(filename: str) -> dict[str, str]:
    # Our file names are ASCII (``customers-20261125-1015.csv``): no RFC 5987 needed.
    return {"Content-Disposition": f'attachment; filename="{filename}"'}


def require_format(fmt: str) -> None:
    """An export route's ``{fmt}`` is ``csv`` or ``xlsx``; anything else is no page."""
    if fmt not in FORMATS:
        raise NotFound(_("No such page"))


def export_response(
    fmt: str,
    basename: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[Cell]],
    *,
    sheet: str = "export",
) -> StreamingResponse:
    """A download of ``rows`` as ``fmt`` (``csv`` or ``xlsx``) named
    ``basename-<UTC yyyymmdd-hhmmss>.fmt``."""
    basename = f"{basename}-{utcnow():%Y%m%d-%H%M%S}"
    if fmt == "csv":
        return StreamingResponse(
            csv_chunks(headers, rows),
            media_type=CSV_MEDIA_TYPE,
            headers=_disposition(f"{basename}.csv"),
        )
    if fmt != "xlsx":
        raise ValueError(f"unknown export format {fmt!r}")
    handle, path = tempfile.mkstemp(prefix="teleserve-export-", suffix=".xlsx")
    os.close(handle)
    try:
        write_xlsx(path, headers, rows, sheet)
    except BaseException:
        os.unlink(path)
        raise
    return StreamingResponse(
        _file_chunks(path),
        media_type=XLSX_MEDIA_TYPE,
        headers=_disposition(f"{basename}.xlsx"),
        background=BackgroundTask(os.unlink, path),
    )


def audit_export(
    uow: UnitOfWork, what: str, fmt: str, rows: int, criteria: Mapping[str, Any]
) -> None:
    """Record who exported which list, how many rows and with which criteria (written
    when the caller commits). Criteria must already be masked where they are personal."""
    uow.audit(
        "console.exported",
        "export",
        what,
        {"format": fmt, "rows": rows, "criteria": dict(criteria)},
    )
