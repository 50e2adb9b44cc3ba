"""Translations: English message ids in the code, Simplified Chinese (the default locale)
and English at the edge.

Message ids are marked with ``_`` (which returns them unchanged, so pybabel can extract
them) and rendered with ``translate``. Catalogs are gettext ``.po`` files under
``teleserve/locales/<locale>/LC_MESSAGES/*.po`` — one file per domain so that domains
change their own messages — read with Babel at first use (no compile step).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
SUPPORTED_LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"


def _(message: str) -> str:
    """Mark ``message`` for translation; it is rendered later by ``translate``."""
    return message


def normalize_locale(value: str | None) -> str:
    """Map an Accept-Language value or locale tag to a supported locale."""
    if not value:
        return DEFAULT_LOCALE
    for part in value.split(","):
        tag = part.split(";")[0].strip().lower().replace("_", "-")
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LOCALE


@lru_cache(maxsize=8)
def catalog(locale: str) -> dict[str, str]:
    """All translations of ``locale`` merged from its .po files (msgid -> msgstr)."""
    folder = LOCALES_DIR / locale.replace("-", "_") / "LC_MESSAGES"
    merged: dict[str, str] = {}
    for po_file in sorted(folder.glob("*.po")):
        with po_file.open("rb") as handle:
            for message in read_po(handle, locale=locale.replace("-", "_")):
                if message.id and isinstance(message.id, str) and message.string:
                    merged[message.id] = str(message.string)
    return merged


def translate(message: str, locale: str | None = None, **params: object) -> str:
    """``message`` in ``locale`` (English is the message id itself), formatted with params."""
    loc = normalize_locale(locale)
    text = message if loc == "en" else catalog(loc).get(message, message)
    return text.format(**params) if params else text
