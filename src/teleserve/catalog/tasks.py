"""Outbox topics of the catalog domain (imported by the worker process)."""

from __future__ import annotations

from teleserve.core.worker import publishes

publishes("catalog.offering_changed")
