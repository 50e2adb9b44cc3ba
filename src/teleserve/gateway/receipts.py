"""The receipt lines of a kiosk payment (2001, 2002, 2010).

PROTOCOL.md: every receipt shows the operator, terminal and site, date and time, the
masked number, the amount, the status, the ``txn_id`` (the reference a customer quotes to
claim held money) and the serial. TSP/1 carries no language, and a printed receipt
serves customers of both, so each line is bilingual (Chinese first, the operator's
default). Times are the operator's local time.

Site and operator names come from the organisation tree, read once per site and cached
(``SiteNames``): a receipt must not cost a query per payment.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from teleserve.core.actor import SYSTEM
from teleserve.core.clock import as_utc
from teleserve.core.errors import NotFound
from teleserve.core.masking import mask_phone
from teleserve.core.money import format_money
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam

STATUS_TEXT = {
    "completed": "成功 completed",
    "pending": "处理中 pending",
    "held": "挂账 held",
    "voided": "已撤销 voided",
}
HELD_TEXT = {
    "number_not_payable": "号码不可缴费 number not payable",
    "amount_mismatch": "金额与纸币不符 amount does not match the notes",
    "unknown_denomination": "面额不受理 unknown denomination",
    "over_limit": "超过限额 over the limit",
    "reversed_original": "交易已撤销 cancelled before it arrived",
    "reversed": "已撤销待退款 reversed, refund at a counter",
}
HELD_HINT = "请凭交易号到营业厅办理 Quote the txn id at a business hall"


@dataclass(frozen=True, slots=True)
class Place:
    operator: str
    site: str


class SiteNames:
    """Operator and site names per site id, cached for ``ttl_s`` (blocking reads)."""

    def __init__(self, engine: Engine, ttl_s: float = 600.0) -> None:
        self._engine = engine
        self._ttl = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Place]] = {}

    def get(self, site_id: str, org_path: str) -> Place:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(site_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        place = self._read(site_id, org_path)
        with self._lock:
            self._cache[site_id] = (now, place)
        return place

    def _read(self, site_id: str, org_path: str) -> Place:
        root_code = org_path.strip("/").split("/", 1)[0]
        with UnitOfWork(self._engine, SYSTEM, readonly=True) as uow:
            try:
                site = iam.get_org_unit(uow, site_id)
                site_name = f"{site.name_zh} {site.name_en}"
            except NotFound:
                site_name = site_id
            try:
                root = iam.get_org_unit_by_code(uow, root_code)
                operator = f"{root.name_zh} {root.name_en}"
            except NotFound:
                operator = root_code
        return Place(operator, site_name)


@dataclass(frozen=True, slots=True)
class ReceiptFacts:
    place: Place
    terminal_id: str
    serial: int
    at: datetime
    msisdn: str
    amount: int
    currency: str
    status: str  # TSP status
    held_reason: str | None
    txn_id: str
    balance_after: int | None = None
    reprint: bool = False


def receipt_lines(facts: ReceiptFacts, timezone: str) -> list[str]:
    local = as_utc(facts.at).astimezone(ZoneInfo(timezone))
    lines = [
        facts.place.operator,
        "自助缴费凭条 Self-service payment receipt",
    ]
    if facts.reprint:
        lines.append("重印 REPRINT")
    lines += [
        f"终端 Terminal: {facts.terminal_id}",
        f"网点 Site: {facts.place.site}",
        f"时间 Time: {local:%Y-%m-%d %H:%M:%S}",
        f"号码 Number: {mask_phone(facts.msisdn)}",
        f"金额 Amount: {format_money(facts.amount, facts.currency)}",
        f"状态 Status: {STATUS_TEXT.get(facts.status, facts.status)}",
    ]
    if facts.held_reason is not None:
        lines.append(f"原因 Reason: {HELD_TEXT.get(facts.held_reason, facts.held_reason)}")
    if facts.balance_after is not None:
        lines.append(f"余额 Balance: {format_money(facts.balance_after, facts.currency)}")
    lines += [f"交易号 Txn: {facts.txn_id}", f"流水号 Serial: {facts.serial}"]
    if facts.status == "held":
        lines.append(HELD_HINT)
    return lines
