"""The kernel's own periodic jobs (imported by the worker process through teleserve.tasks).

``audit.daily_checkpoint``: DESIGN.md section 5 — the worker signs every audit chain's
head once a day and writes it outside the database, which bounds how far back a
rewritten tail can go unnoticed. The timer's next run is stored in the database, so a
restart neither skips nor repeats a day.
"""

from __future__ import annotations

from teleserve.core import audit
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import every

DAY = 24 * 3600


@every(DAY, name="audit.daily_checkpoint")
def daily_audit_checkpoint(uow: UnitOfWork) -> None:
    settings = get_settings()
    audit.checkpoint(uow.engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file)
