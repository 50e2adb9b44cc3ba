"""Fixtures of the notify tests: every test starts with the senders chosen by settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import teleserve.notify.tasks  # noqa: F401 (registers the notify.deliver handler)
from teleserve.notify import senders
from teleserve.notify.models import Channel


@pytest.fixture(autouse=True)
def _default_senders() -> Iterator[None]:
    for channel in Channel:
        senders.use_sender(channel, None)
    yield
    for channel in Channel:
        senders.use_sender(channel, None)
