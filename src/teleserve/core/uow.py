"""The unit of work: one database transaction that the caller owns.

Services receive a ``UnitOfWork``, change state through ``uow.session`` (ORM) or
``uow.connection`` (Core, for hot paths), flush, and never commit. The caller — a request,
a frame batch, an outbox task, a CLI command — calls ``commit`` once. Outbox messages
(``emit``) and audit records (``audit``) join that same transaction, so an event or an
audit record exists exactly when the change it describes does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, Engine, RootTransaction
from sqlalchemy.orm import Session

from teleserve.core import audit, outbox
from teleserve.core.actor import SYSTEM, Actor
from teleserve.core.i18n import DEFAULT_LOCALE


class UnitOfWork:
    """One transaction. By default it has a Session of its own on a pooled connection.

    ``connection=``: the transaction runs on that Core connection, which its owner keeps
    between units of work (a writer thread on a hot path). The Session is only made if a
    service asks for ``uow.session``; a Core-only unit of work (the kiosk money batch)
    then costs no pool checkout, no Session and no ORM commit: ~0.1 ms of CPU less a
    transaction on a small VM (BENCHMARKS.md, "Kiosk load", session 7)."""

    def __init__(
        self,
        engine: Engine,
        actor: Actor = SYSTEM,
        *,
        locale: str = DEFAULT_LOCALE,
        readonly: bool = False,
        connection: Connection | None = None,
    ) -> None:
        self.engine = engine
        self.actor = actor
        self.locale = locale
        self.readonly = readonly
        self._held = connection
        self._entered = False
        self._transaction: RootTransaction | None = None  # on a held connection
        self._session: Session | None = None
        # The transaction's connection, once asked for: ``Session.connection()`` costs
        # ~50 us a call, and a money batch asks a dozen times. Forgotten when the
        # transaction ends (commit, rollback, exit).
        self._connection: Connection | None = None
        self._pending_audit: list[audit.PendingRecord] = []
        self._pending_outbox: list[dict[str, Any]] = []
        self._after_commit: list[Callable[[], None]] = []

    # -- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> Self:
        if self._held is not None:
            if self.readonly:
                raise ValueError("a unit of work on a held connection is for writing")
        else:
            bind = self.engine.execution_options(readonly=True) if self.readonly else self.engine
            self._session = Session(bind=bind, expire_on_commit=False, autoflush=True)
        self._entered = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._end(commit=False)  # no-op after a commit
        finally:
            if self._session is not None:
                # Detaches what it loaded: nothing lazy-loads past the unit of work.
                self._session.close()
                self._session = None
            self._entered = False
            self._pending_audit.clear()
            self._pending_outbox.clear()

    @property
    def session(self) -> Session:
        if not self._entered:
            raise RuntimeError("UnitOfWork used outside its 'with' block")
        session = self._session
        if session is None:
            # On a held connection, made when first asked for, inside the transaction
            # this unit of work began and ends itself (``_end``).
            session = self._session = Session(
                bind=self.connection,
                expire_on_commit=False,
                autoflush=True,
                join_transaction_mode="rollback_only",
            )
        return session

    @property
    def connection(self) -> Connection:
        """The transaction's Core connection, for batched statements on hot paths."""
        connection = self._connection
        if connection is None:
            if self._held is None:
                connection = self.session.connection()
            else:
                if not self._entered:
                    raise RuntimeError("UnitOfWork used outside its 'with' block")
                self._transaction = self._held.begin()  # on SQLite: BEGIN IMMEDIATE
                connection = self._held
            self._connection = connection
        return connection

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def flush(self) -> None:
        self.session.flush()

    def commit(self) -> None:
        if self.readonly:
            raise RuntimeError("a read-only unit of work cannot commit")
        if not self._entered:
            raise RuntimeError("UnitOfWork used outside its 'with' block")
        if self._session is not None:
            self._session.flush()
        # Side channels are buffered and written here in batches: one insert for the
        # outbox, three statements for the audit chains, whatever the number of records.
        if self._pending_outbox:
            outbox.write(self.connection, self._pending_outbox)
            self._pending_outbox = []
        if self._pending_audit:
            audit.write(self.connection, self._pending_audit)
            self._pending_audit = []
        self._end(commit=True)
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def rollback(self) -> None:
        self._end(commit=False)
        self._pending_audit.clear()
        self._pending_outbox.clear()
        self._after_commit.clear()

    def _end(self, *, commit: bool) -> None:
        """End the transaction. The next statement begins a new one (the Session's own
        autobegin, or ``connection`` on a held connection)."""
        self._connection = None
        session, transaction = self._session, self._transaction
        if self._held is None:
            if session is not None:
                session.commit() if commit else session.rollback()
            return
        self._session = self._transaction = None
        try:
            if transaction is not None and transaction.is_active:
                transaction.commit() if commit else transaction.rollback()
        finally:
            if session is not None:
                session.close()  # its objects belong to the transaction that ended

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: if the block raises, its database changes *and* the
        audit records, outbox messages and after-commit callbacks it queued are dropped
        (the exception propagates). Hot paths use one per request inside a batch."""
        marks = (len(self._pending_audit), len(self._pending_outbox), len(self._after_commit))
        nested: Any = (
            self.connection.begin_nested()
            if self._held is not None and self._session is None
            else self.session.begin_nested()
        )
        try:
            yield
        except BaseException:
            nested.rollback()
            del self._pending_audit[marks[0] :]
            del self._pending_outbox[marks[1] :]
            del self._after_commit[marks[2] :]
            raise
        nested.commit()

    # -- side channels in the same transaction -------------------------------------
    def audit(
        self,
        action: str,
        subject_type: str,
        subject_id: str,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record that the actor did ``action`` to a subject (written at commit)."""
        self._pending_audit.append(
            audit.PendingRecord.of(self.actor, action, subject_type, subject_id, detail)
        )

    def emit(self, topic: str, payload: dict[str, Any], *, key: str | None = None) -> None:
        """Queue an outbox message, delivered at least once after this transaction commits."""
        self._pending_outbox.append(outbox.message_row(topic, payload, key=key))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the transaction has committed (never on rollback)."""
        self._after_commit.append(callback)
