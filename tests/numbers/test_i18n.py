"""Every message id of the numbers domain has its Simplified Chinese translation."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import teleserve.numbers
from teleserve.core.i18n import LOCALES_DIR, translate

SOURCE = Path(teleserve.numbers.__file__).parent
PO_FILE = LOCALES_DIR / "zh_CN" / "LC_MESSAGES" / "numbers.po"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _message_ids() -> set[str]:
    found = extract_from_dir(str(SOURCE), method_map=[("**.py", "python")], keywords={"_": None})
    return {str(message) for _file, _line, message, _comments, _context in found}


def test_every_message_is_translated_with_its_placeholders():
    with PO_FILE.open("rb") as handle:
        catalog = {m.id: m.string for m in read_po(handle) if m.id}
    ids = _message_ids()
    assert len(ids) > 30  # the extraction really saw the service's messages
    missing = sorted(i for i in ids if not catalog.get(i))
    assert missing == []
    for message_id in ids:
        translated = str(catalog[message_id])
        assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(message_id))
        assert re.search(r"[\u4e00-\u9fff]", translated), message_id


def test_rendering_in_chinese():
    assert translate("Number {number} not found", "zh-CN", number="139****5678") == (
        "号码 139****5678 不存在"
    )
