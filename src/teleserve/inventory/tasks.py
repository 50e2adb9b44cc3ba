"""Outbox topics of the inventory domain (imported by the worker process)."""

from __future__ import annotations

from teleserve.core.worker import publishes

publishes("inventory.subscription_changed")
