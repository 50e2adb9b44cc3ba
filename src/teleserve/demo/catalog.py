"""The demo catalog: mobile plans, value-added services, broadband and fixed line, and
points rewards — priced like a mainland operator's 2026 price list (fees in fen, usage
rates in fen per minute / MB / message beyond the allowance)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def _plan(
    code: str, zh: str, en: str, fee: int, minutes: int, data_gb: int, **extra: Any
) -> dict[str, Any]:
    return {
        "code": code,
        "kind": "plan",
        "name_zh": zh,
        "name_en": en,
        "description_zh": f"每月{minutes}分钟国内通话、{data_gb}GB国内流量",
        "description_en": f"{minutes} domestic minutes and {data_gb} GB domestic data a month",
        "category": "mobile",
        "status": "active",
        "monthly_fee": fee,
        "voice_minutes": minutes,
        "data_mb": data_gb * 1024,
        "sms_count": 100,
        "voice_rate": Decimal("15"),
        "data_rate": Decimal("3"),
        "sms_rate": Decimal("10"),
        **extra,
    }


OFFERINGS: tuple[dict[str, Any], ...] = (
    _plan("MOB-38", "畅享38元套餐", "Enjoy 38", 3800, 100, 10),
    _plan("MOB-58", "畅享58元套餐", "Enjoy 58", 5800, 200, 30),
    _plan("MOB-88", "畅享88元套餐", "Enjoy 88", 8800, 500, 60),
    _plan("MOB-128", "畅享128元套餐", "Enjoy 128", 12800, 1000, 100),
    _plan("MOB-188", "畅享188元套餐", "Enjoy 188", 18800, 2000, 200),
    _plan(
        "MOB-ENT-99",
        "政企商务99元套餐",
        "Business 99",
        9900,
        1000,
        50,
        customer_categories=("organisation",),
        account_types=("postpaid",),
    ),
    {
        "code": "VAS-CLIP",
        "kind": "vas",
        "name_zh": "来电显示",
        "name_en": "Caller ID",
        "category": "voice",
        "status": "active",
        "monthly_fee": 500,
    },
    {
        "code": "VAS-RBT",
        "kind": "vas",
        "name_zh": "彩铃",
        "name_en": "Ringback tone",
        "category": "voice",
        "status": "active",
        "monthly_fee": 500,
    },
    {
        "code": "VAS-DATA10G",
        "kind": "vas",
        "name_zh": "10GB流量包",
        "name_en": "10 GB data pack",
        "category": "data",
        "status": "active",
        "monthly_fee": 3000,
        "data_mb": 10 * 1024,
        "requires_plans": ("MOB-38", "MOB-58", "MOB-88"),
    },
    {
        "code": "BB-300M",
        "kind": "broadband",
        "name_zh": "300M光纤宽带",
        "name_en": "300 Mbps fibre",
        "category": "broadband",
        "status": "active",
        "monthly_fee": 9900,
        "one_time_fee": 10000,
    },
    {
        "code": "BB-1000M",
        "kind": "broadband",
        "name_zh": "千兆光纤宽带",
        "name_en": "1 Gbps fibre",
        "category": "broadband",
        "status": "active",
        "monthly_fee": 19900,
        "one_time_fee": 10000,
    },
    {
        "code": "FIX-BASIC",
        "kind": "fixed_line",
        "name_zh": "固话基础套餐",
        "name_en": "Fixed line basic",
        "category": "fixed",
        "status": "active",
        "monthly_fee": 1500,
        "voice_minutes": 300,
        "voice_rate": Decimal("10"),
    },
)

REWARDS: tuple[dict[str, Any], ...] = (
    {
        "code": "RW-DATA10G",
        "name_zh": "积分兑换10GB流量包",
        "name_en": "10 GB data pack for points",
        "points_cost": 3000,
        "grant": "offering",
        "offering_code": "VAS-DATA10G",
    },
    {
        "code": "RW-CREDIT10",
        "name_zh": "积分兑换10元话费",
        "name_en": "¥10 bill credit for points",
        "points_cost": 1000,
        "grant": "bill_credit",
        "credit_amount": 1000,
    },
    {
        "code": "RW-CREDIT50",
        "name_zh": "积分兑换50元话费",
        "name_en": "¥50 bill credit for points",
        "points_cost": 4500,
        "grant": "bill_credit",
        "credit_amount": 5000,
    },
)
