"""Every outbox topic the code emits is either handled or declared a published event, so
no message is dead-lettered for want of a handler."""

from __future__ import annotations

import re
from pathlib import Path

import teleserve
from teleserve import tasks
from teleserve.core.worker import registry


def test_every_emitted_topic_is_handled_or_published():
    tasks.load_all()
    source = Path(teleserve.__file__).parent
    emitted: set[str] = set()
    for path in source.rglob("service.py"):
        text = path.read_text()
        constants = dict(re.findall(r'^([A-Z_]+)(?::[^=]+)? = "([a-z_.]+)"', text, re.M))
        for call in re.finditer(r'uow\.emit\(\s*(f?"[^"]+"|[A-Z_]+)', text):
            topic = call.group(1)
            assert not topic.startswith("f"), f"{path}: topics must be literal strings"
            emitted.add(topic.strip('"') if topic.startswith('"') else constants[topic])
    assert {"inventory.subscription_changed", "payments.recorded"} <= emitted
    orphans = sorted(
        t for t in emitted if not registry.handlers_for(t) and not registry.is_event(t)
    )
    assert not orphans, f"emitted but neither handled nor declared with publishes(): {orphans}"
