"""Every message id marked with ``_()`` in the code and the console templates has a
Simplified Chinese translation, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir

import teleserve
from teleserve.core.i18n import catalog

SOURCE = Path(teleserve.__file__).parent
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _message_ids() -> dict[str, str]:
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(SOURCE),
        # Console templates translate with ``{{ _("...") }}`` too (Babel's Jinja2 extractor).
        method_map=[("**.py", "python"), ("**/templates/**.html", "jinja2")],
        keywords={"_": None},
    ):
        if isinstance(message, str):
            found.setdefault(message, f"{filename}:{lineno}")
    return found


def test_every_message_has_a_chinese_translation():
    ids = _message_ids()
    assert len(ids) > 10, "extraction found suspiciously few messages"
    zh = catalog("zh-CN")
    missing = {m: where for m, where in ids.items() if m not in zh}
    assert not missing, "untranslated (add them to locales/zh_CN/LC_MESSAGES/*.po):\n" + "\n".join(
        f"  {where}: {m!r}" for m, where in sorted(missing.items(), key=lambda x: x[1])
    )


def test_translations_keep_their_placeholders():
    zh = catalog("zh-CN")
    wrong = [
        msgid
        for msgid, text in zh.items()
        if set(PLACEHOLDER.findall(msgid)) != set(PLACEHOLDER.findall(text))
    ]
    assert not wrong, wrong
