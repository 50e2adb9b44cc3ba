"""Masking of personal data for display and logs (DESIGN.md section 5).

Personal data is shown masked everywhere except to its owner once authenticated:

- phone numbers keep their first 3 and last 4 digits: ``138****8000``;
- ID numbers keep the 6-digit region code and the last 4 characters:
  ``110101********1234`` (shorter documents keep less, see ``mask_id_number``);
- Chinese names keep their surname: ``张*``, and ``欧阳**`` for 欧阳娜娜 as DESIGN.md
  shows — a name starting with a known compound surname (``COMPOUND_SURNAMES``) keeps
  both characters, unless the name has only two;
- Latin names keep their first letter followed by a fixed ``***`` (the length of the name
  is not revealed).

Masks keep the value's length for digits and Chinese names (staff can tell a mobile from a
fixed line) and never raise: ``None`` or an empty string gives an empty string.
"""

from __future__ import annotations

import unicodedata

MASK = "*"


def _stars(count: int) -> str:
    return MASK * max(count, 0)


def mask_phone(value: str | None) -> str:
    """``13800138000`` → ``138****8000``; a leading ``+`` and country code are kept as given.

    Numbers too short to keep 7 digits visible keep only their last digits (at most half of
    the number), so a mask never shows most of a short number.
    """
    if not value:
        return ""
    text = value.strip()
    prefix = ""
    if text.startswith("+"):
        # +86 13800138000 / +8613800138000: mask the national part only.
        head, _, rest = text.partition(" ")
        if rest:
            prefix, text = head + " ", rest.replace(" ", "")
        elif text.startswith("+86") and len(text) > 3:
            prefix, text = "+86", text[3:]
    length = len(text)
    if length >= 11:
        return prefix + text[:3] + _stars(length - 7) + text[-4:]
    if length >= 7:
        return prefix + text[:2] + _stars(length - 6) + text[-4:]
    keep = length // 2
    return prefix + _stars(length - keep) + (text[-keep:] if keep else "")


def mask_id_number(value: str | None) -> str:
    """``110101199003071234`` → ``110101********1234``.

    18- and 15-digit resident ID numbers (and other long numbers) keep the first 6 and the
    last 4 characters; passports and permits (8 to 14 characters) keep their first 2 and
    last 2; anything shorter keeps only its first character.
    """
    if not value:
        return ""
    text = value.strip()
    length = len(text)
    if length >= 15:
        return text[:6] + _stars(length - 10) + text[-4:]
    if length >= 8:
        return text[:2] + _stars(length - 4) + text[-2:]
    return text[:1] + _stars(length - 1)


def _is_cjk(char: str) -> bool:
    # CJK ideographs (and compatibility forms) are "Lo" letters whose Unicode name starts
    # with "CJK"; this covers the extension blocks without listing their ranges.
    return unicodedata.name(char, "").startswith("CJK")


# Compound (two-character) surnames: DESIGN.md masks 欧阳娜娜 as 欧阳**, keeping the whole
# surname, so these are kept whole when a name starts with one.
COMPOUND_SURNAMES = frozenset(
    {
        "欧阳",
        "司马",
        "上官",
        "诸葛",
        "东方",
        "皇甫",
        "尉迟",
        "公孙",
        "慕容",
        "长孙",
        "宇文",
        "司徒",
        "夏侯",
        "令狐",
        "端木",
        "独孤",
        "南宫",
        "西门",
        "呼延",
        "轩辕",
        "钟离",
        "闻人",
        "赫连",
        "澹台",
        "公冶",
        "宗政",
        "濮阳",
        "太叔",
        "申屠",
        "公羊",
        "百里",
        "东郭",
        "万俟",
    }
)


def mask_name(value: str | None) -> str:
    """``张三`` → ``张*``, ``欧阳娜娜`` → ``欧阳**``, ``John Smith`` → ``J***``."""
    if not value:
        return ""
    text = value.strip()
    if not text:
        return ""
    first = text[0]
    if _is_cjk(first):
        kept = 2 if text[:2] in COMPOUND_SURNAMES and len(text) > 2 else 1
        return text[:kept] + _stars(len(text) - kept)
    return first + MASK * 3


def mask_email(value: str | None) -> str:
    """``zhangsan@example.com`` → ``z***@example.com`` (the domain stays readable)."""
    if not value:
        return ""
    local, at, domain = value.strip().partition("@")
    if not at:
        return mask_name(local)
    return (local[:1] + MASK * 3 if local else "") + "@" + domain
