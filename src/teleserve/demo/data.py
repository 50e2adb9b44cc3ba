"""The demo operator: a fictional provincial carrier in Guangdong, as data.

Numbers, ID-card region codes and districts are real Chinese formats so that every
validator in the system accepts them: ID region codes are the GB/T 2260 codes of the
districts, mobile prefixes are real mainland mobile prefixes (the demo operator owns
ranges inside them).
"""

from __future__ import annotations

from dataclasses import dataclass

OPERATOR = ("TS", "粤通电信", "Yuetong Telecom")
PROVINCE = ("GD", "广东省分公司", "Guangdong Branch")


@dataclass(frozen=True)
class DemoCity:
    code: str
    name_zh: str
    name_en: str
    # (GB/T 2260 district code, district name) — used for ID numbers and addresses.
    districts: tuple[tuple[str, str], ...]
    streets: tuple[str, ...]
    # Halls: (code, Chinese name, English name).
    halls: tuple[tuple[str, str, str], ...]
    # Mobile number blocks the demo operator holds in this city (the first 7 digits);
    # ``block(i)`` continues past the listed ones for large demos.
    mobile_blocks: tuple[str, ...]
    weight: int  # share of customers

    def block(self, index: int) -> str:
        if index < len(self.mobile_blocks):
            return self.mobile_blocks[index]
        base = self.mobile_blocks[index % len(self.mobile_blocks)]
        return f"{base[:3]}{(int(base[3:]) + 10 * (index // len(self.mobile_blocks))) % 10_000:04d}"


CITIES: tuple[DemoCity, ...] = (
    DemoCity(
        "GZ",
        "广州市分公司",
        "Guangzhou",
        (
            ("440103", "荔湾区"),
            ("440104", "越秀区"),
            ("440105", "海珠区"),
            ("440106", "天河区"),
            ("440111", "白云区"),
            ("440113", "番禺区"),
        ),
        ("中山大道", "天河路", "环市东路", "江南大道", "工业大道", "广州大道", "黄埔大道"),
        (
            ("GZ01", "天河营业厅", "Tianhe Hall"),
            ("GZ02", "越秀营业厅", "Yuexiu Hall"),
            ("GZ03", "番禺营业厅", "Panyu Hall"),
        ),
        ("1380200", "1380201", "1390200", "1500200", "1880200"),
        5,
    ),
    DemoCity(
        "SZ",
        "深圳市分公司",
        "Shenzhen",
        (
            ("440303", "罗湖区"),
            ("440304", "福田区"),
            ("440305", "南山区"),
            ("440306", "宝安区"),
            ("440307", "龙岗区"),
        ),
        ("深南大道", "滨海大道", "北环大道", "宝安大道", "龙岗大道", "科技园路"),
        (("SZ01", "福田营业厅", "Futian Hall"), ("SZ02", "南山营业厅", "Nanshan Hall")),
        ("1380755", "1390755", "1500755", "1870755"),
        4,
    ),
    DemoCity(
        "FS",
        "佛山市分公司",
        "Foshan",
        (("440604", "禅城区"), ("440605", "南海区"), ("440606", "顺德区")),
        ("季华路", "佛山大道", "桂澜路", "大良新城路"),
        (("FS01", "禅城营业厅", "Chancheng Hall"), ("FS02", "顺德营业厅", "Shunde Hall")),
        ("1380757", "1390757", "1520757"),
        2,
    ),
)

# Staff of each role: (username, display name, role, org level: "operator" | city code |
# hall code). The password of every demo user is DEMO_PASSWORD (see seed.py).
STAFF: tuple[tuple[str, str, str, str], ...] = (
    ("admin", "系统管理员", "admin", "operator"),
    ("auditor", "审计员 陈静", "auditor", "operator"),
    ("finance", "财务 刘洋", "finance", "operator"),
    ("gz.admin", "广州管理员 王强", "org_admin", "GZ"),
    ("gz.manager", "广州经理 赵敏", "manager", "GZ"),
    ("gz.ops", "广州终端运维 孙磊", "terminal_ops", "GZ"),
    ("gz.backoffice", "广州后台 周婷", "backoffice", "GZ"),
    ("gz01.agent", "天河营业员 李娜", "agent", "GZ01"),
    ("gz01.cashier", "天河收银员 吴芳", "cashier", "GZ01"),
    ("sz.admin", "深圳管理员 郑伟", "org_admin", "SZ"),
    ("sz01.agent", "福田营业员 黄丽", "agent", "SZ01"),
    ("fs01.agent", "禅城营业员 林峰", "agent", "FS01"),
)
