"""Masking of personal data for display and logs (DESIGN.md section 5).

Personal data is shown masked everywhere except to its owner once authenticated:

- phone numbers keep their first 3 and last 4 digits: ``138****8000``;
- ID numbers keep the 6-digit region code and the last 4 characters:
  ``110101********1234`` (shorter documents keep less, see ``mask_id_number``);
- Chinese names keep their first character only, whatever the surname's length:
  ``张*``, ``欧***`` for 欧阳娜娜 — compound surnames are not guessed, so a masked name
  never reveals more than one character;
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


def mask_name(value: str | None) -> str:
    """``张三`` → ``张*``, ``欧阳娜娜`` → ``欧***``, ``John Smith`` → ``J***``."""
    if not value:
        return ""
    text = value.strip()
    if not text:
        return ""
    first = text[0]
    if _is_cjk(first):
        return first + _stars(len(text) - 1)
    return first + MASK * 3


def mask_email(value: str | None) -> str:
    """``zhangsan@example.com`` → ``z***@example.com`` (the domain stays readable)."""
    if not value:
        return ""
    local, at, domain = value.strip().partition("@")
    if not at:
        return mask_name(local)
    return (local[:1] + MASK * 3 if local else "") + "@" + domain
