"""Every message id marked with ``_()`` in the iam package has a Chinese translation in
``iam.po`` that keeps the same ``{placeholders}``."""

from __future__ import annotations

import ast
import string
from pathlib import Path

from babel.messages.pofile import read_po

import teleserve.iam

PACKAGE = Path(teleserve.iam.__file__).parent
PO_FILE = PACKAGE.parent / "locales" / "zh_CN" / "LC_MESSAGES" / "iam.po"


def _message_ids() -> set[str]:
    found: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "_"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value)
    return found


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_iam_message_is_translated():
    with PO_FILE.open("rb") as handle:
        catalog = {m.id: m.string for m in read_po(handle, locale="zh_CN") if m.id}
    ids = _message_ids()
    assert len(ids) > 30
    missing = sorted(i for i in ids if not catalog.get(i))
    assert missing == []
    for message_id in ids:
        assert _fields(catalog[message_id]) == _fields(message_id), message_id
