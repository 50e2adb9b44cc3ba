"""Every message id marked with ``_()`` in the catalog and inventory domains has a
Simplified Chinese translation that keeps its placeholders."""

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

import teleserve

SRC = Path(teleserve.__file__).resolve().parent
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def message_ids(domain: str) -> set[str]:
    ids: set[str] = set()
    for path in sorted((SRC / domain).glob("*.py")):
        for _lineno, message, _comments, _context in extract_from_file(
            "python", str(path), keywords={"_": None}
        ):
            ids.add(str(message))
    return ids


@pytest.mark.parametrize("domain", ["catalog", "inventory"])
def test_every_message_is_translated(domain):
    po_path = SRC / "locales" / "zh_CN" / "LC_MESSAGES" / f"{domain}.po"
    with po_path.open("rb") as handle:
        translations = {str(m.id): str(m.string) for m in read_po(handle, locale="zh_CN") if m.id}
    ids = message_ids(domain)
    assert len(ids) > 20
    missing = sorted(ids - translations.keys())
    assert not missing, missing
    for message_id in ids:
        translated = translations[message_id]
        assert translated and translated != message_id
        assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(message_id))
