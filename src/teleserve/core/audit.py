"""The tamper-evident audit log (DESIGN.md section 5).

Every state change and every read of sensitive data appends a record. Records live in a
fixed number of hash chains (``settings.audit_chains``, default 16) chosen by a hash of
the subject's id, so concurrent writers rarely queue on the same chain head. Each record's
hash covers its content and the previous record's hash; ``audit_chain_head`` holds each
chain's last (seq, hash) and is locked row-by-row (in chain order, so never a deadlock)
while a transaction appends.

A checkpoint — every chain's head, signed with an Ed25519 key — is written *outside* the
database (``checkpoint``). ``verify`` walks every chain and compares it with the latest
checkpoint: an edited record breaks its own hash, a deleted one leaves a gap in ``seq``,
and a rewritten tail (records deleted and re-forged with fresh hashes) no longer matches
the signed head.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Index,
    String,
    Text,
    and_,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.clock import utcnow
from teleserve.core.db import Base, execute_many, insert_many, json_text, read_engine, table_of
from teleserve.core.reads import fetch

GENESIS_HASH = "0" * 64


class AuditRecord(Base):
    __tablename__ = "audit_record"

    id: Mapped[int] = mapped_column(
        BigInteger()
        .with_variant(BigInteger(), "postgresql")
        .with_variant(
            # SQLite only auto-increments an INTEGER PRIMARY KEY.
            sqlite.INTEGER(),
            "sqlite",
        ),
        primary_key=True,
        autoincrement=True,
    )
    chain: Mapped[int]
    seq: Mapped[int]
    at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(100))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str] = mapped_column(String(100))
    # Canonical JSON text (not a JSON column) so the hashed bytes are the stored bytes.
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("uq_audit_record_chain_seq", "chain", "seq", unique=True),
        Index("ix_audit_record_subject", "subject_type", "subject_id"),
    )


class AuditChainHead(Base):
    __tablename__ = "audit_chain_head"

    chain: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int]
    hash: Mapped[str] = mapped_column(String(64))


def canonical_json(value: Any) -> str:
    # Compact, UTF-8, keys sorted: the JSON columns' encoder (``core.db.json_text``).
    return json_text(value)


def chain_of(subject_id: str, chains: int) -> int:
    digest = hashlib.blake2b(subject_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % chains


def record_hash(
    *,
    chain: int,
    seq: int,
    at: datetime,
    actor_kind: str,
    actor_id: str,
    action: str,
    subject_type: str,
    subject_id: str,
    detail: str,
    prev_hash: str,
) -> str:
    texts = (
        at.isoformat(timespec="microseconds"),
        actor_kind,
        actor_id,
        action,
        subject_type,
        subject_id,
        detail,
        prev_hash,
    )
    return _hash(chain, seq, texts)


# How ``canonical_json`` writes a str (``ensure_ascii=False``): the same function.
_json_string = json.encoder.encode_basestring


def _hash(chain: int, seq: int, texts: tuple[str, ...]) -> str:
    """SHA-256 of ``canonical_json([chain, seq, *texts])``. For the usual types (ints and
    strs) the JSON array is joined directly, the same text for a fraction of the cost;
    anything else takes ``canonical_json`` itself."""
    content: str | None = None
    if type(chain) is int and type(seq) is int:
        try:
            content = f"[{chain},{seq},{','.join(map(_json_string, texts))}]"
        except TypeError:  # not a str: canonical_json decides what it becomes
            content = None
    if content is None:
        content = canonical_json([chain, seq, *texts])
    return hashlib.sha256(content.encode()).hexdigest()


class PendingRecord(NamedTuple):
    """An audit record queued in a unit of work (a tuple: a batch queues thousands)."""

    actor_kind: str
    actor_id: str
    action: str
    subject_type: str
    subject_id: str
    detail: str

    @classmethod
    def of(
        cls,
        actor: Any,
        action: str,
        subject_type: str,
        subject_id: str,
        detail: dict[str, Any] | None,
    ) -> PendingRecord:
        return cls(
            str(actor.kind),
            actor.id,
            action,
            subject_type,
            subject_id,
            canonical_json(detail or {}),
        )


def _chains() -> int:
    from teleserve.core.settings import get_settings

    return get_settings().audit_chains


_HEADS = select(
    table_of(AuditChainHead).c.chain,
    table_of(AuditChainHead).c.seq,
    table_of(AuditChainHead).c.hash,
).where(table_of(AuditChainHead).c.chain.in_(bindparam("chains", expanding=True)))
# Built once: building a statement costs more Python than running it (every commit that
# writes audit records takes this path).
_HEADS_ORDERED = _HEADS.order_by(table_of(AuditChainHead).c.chain)
_HEADS_LOCKED = _HEADS_ORDERED.with_for_update()


def _lock_heads(conn: Connection, chains: list[int]) -> dict[int, tuple[int, str]]:
    """The heads of ``chains``, locked for this transaction in ascending chain order (so
    two writers never deadlock), created on first use."""
    query = _HEADS_LOCKED if conn.dialect.name == "postgresql" else _HEADS_ORDERED
    params = {"chains": chains}
    heads = {int(r.chain): (int(r.seq), str(r.hash)) for r in fetch(conn, query, params)}
    missing = [chain for chain in chains if chain not in heads]
    if missing:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(table_of(AuditChainHead)).on_conflict_do_nothing(),
            [{"chain": chain, "seq": 0, "hash": GENESIS_HASH} for chain in missing],
        )
        heads = {int(r.chain): (int(r.seq), str(r.hash)) for r in fetch(conn, query, params)}
    return heads


_UPDATE_HEAD = (
    update(table_of(AuditChainHead))
    .where(table_of(AuditChainHead).c.chain == bindparam("b_chain"))
    .values(seq=bindparam("b_seq"), hash=bindparam("b_hash"))
)


def write(conn: Connection, pending: Iterable[PendingRecord]) -> None:
    """Append ``pending`` records to their chains inside the caller's transaction: one
    statement to lock the heads, one to insert the records, one to move the heads."""
    chains = _chains()
    by_chain: dict[int, list[PendingRecord]] = {}
    for record in pending:
        by_chain.setdefault(chain_of(record.subject_id, chains), []).append(record)
    if not by_chain:
        return
    at = utcnow()
    at_text = at.isoformat(timespec="microseconds")  # as record_hash writes it
    heads = _lock_heads(conn, sorted(by_chain))
    rows: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    for chain in sorted(by_chain):
        seq, prev = heads[chain]
        for record in by_chain[chain]:
            seq += 1
            texts = (
                at_text,
                record.actor_kind,
                record.actor_id,
                record.action,
                record.subject_type,
                record.subject_id,
                record.detail,
                prev,
            )
            digest = _hash(chain, seq, texts)  # = record_hash of the row below
            rows.append(
                {
                    "chain": chain,
                    "seq": seq,
                    "at": at,
                    "actor_kind": record.actor_kind,
                    "actor_id": record.actor_id,
                    "action": record.action,
                    "subject_type": record.subject_type,
                    "subject_id": record.subject_id,
                    "detail": record.detail,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            prev = digest
        moved.append({"b_chain": chain, "b_seq": seq, "b_hash": prev})
    insert_many(conn, table_of(AuditRecord), rows)
    execute_many(conn, _UPDATE_HEAD, moved)


# -- checkpoints -----------------------------------------------------------------------


def load_or_create_signing_key(path: Path) -> Ed25519PrivateKey:
    """The checkpoint signing key; a new one is written (mode 0600) if none exists."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key


def _public_hex(key: Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def current_heads(engine: Engine) -> dict[int, tuple[int, str]]:
    with read_engine(engine).connect() as conn:
        rows = conn.execute(select(table_of(AuditChainHead))).all()
    return {int(r.chain): (int(r.seq), str(r.hash)) for r in rows}


def checkpoint(engine: Engine, directory: Path, key_file: Path) -> Path:
    """Write every chain's head, signed, to a new file in ``directory``."""
    key = load_or_create_signing_key(key_file)
    heads = current_heads(engine)
    payload = {
        "version": 1,
        "created_at": utcnow().isoformat(timespec="microseconds"),
        "chains": {str(c): {"seq": s, "hash": h} for c, (s, h) in sorted(heads.items())},
    }
    body = canonical_json(payload)
    document = {
        "checkpoint": payload,
        "public_key": _public_hex(key.public_key()),
        "signature": base64.b64encode(key.sign(body.encode())).decode(),
    }
    directory.mkdir(parents=True, exist_ok=True)
    stamp = utcnow().strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"checkpoint-{stamp}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(canonical_json(document))
    tmp.replace(path)
    return path


def latest_checkpoint(directory: Path) -> Path | None:
    files = sorted(directory.glob("checkpoint-*.json")) if directory.exists() else []
    return files[-1] if files else None


def read_checkpoint(path: Path, key_file: Path) -> dict[int, tuple[int, str]]:
    """The signed heads in ``path``; raises ``ValueError`` if the signature is not ours."""
    document = json.loads(path.read_text())
    expected_key = load_or_create_signing_key(key_file).public_key()
    if document.get("public_key") != _public_hex(expected_key):
        raise ValueError(f"{path.name} was signed by another key")
    body = canonical_json(document["checkpoint"]).encode()
    try:
        expected_key.verify(base64.b64decode(document["signature"]), body)
    except Exception as exc:  # cryptography raises InvalidSignature
        raise ValueError(f"{path.name}: bad signature") from exc
    return {
        int(c): (int(v["seq"]), str(v["hash"])) for c, v in document["checkpoint"]["chains"].items()
    }


# -- verification ----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    chain: int
    seq: int
    record_id: int | None
    kind: str  # edited | missing | relinked | rewritten | head
    message: str


@dataclass
class VerifyReport:
    records: int = 0
    chains: int = 0
    checkpoint: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "chains": self.chains,
            "checkpoint": self.checkpoint,
            "first_problem": self.first_problem.__dict__ if self.first_problem else None,
            "problems": [p.__dict__ for p in self.problems],
        }


def verify(engine: Engine, checkpoint_dir: Path, key_file: Path) -> VerifyReport:
    """Walk every chain; report each chain's first broken record, earliest chain first."""
    report = VerifyReport()
    cp_path = latest_checkpoint(checkpoint_dir)
    signed: dict[int, tuple[int, str]] = {}
    if cp_path is not None:
        report.checkpoint = cp_path.name
        signed = read_checkpoint(cp_path, key_file)
    heads = current_heads(engine)
    table = table_of(AuditRecord)
    chains = sorted(set(heads) | set(signed))
    with read_engine(engine).connect() as conn:
        present = {int(c) for c in conn.execute(select(table.c.chain).distinct()).scalars()}
        chains = sorted(set(chains) | present)
        for chain in chains:
            report.chains += 1
            problem = _verify_chain(conn, chain, heads.get(chain), signed.get(chain), report)
            if problem is not None:
                report.problems.append(problem)
    report.problems.sort(key=lambda p: (p.record_id is None, p.record_id or 0, p.chain))
    return report


def _verify_chain(
    conn: Connection,
    chain: int,
    head: tuple[int, str] | None,
    signed: tuple[int, str] | None,
    report: VerifyReport,
) -> Problem | None:
    table = table_of(AuditRecord)
    rows = conn.execution_options(yield_per=2000).execute(
        select(table).where(table.c.chain == chain).order_by(table.c.seq)
    )
    expected_seq, prev = 1, GENESIS_HASH
    for row in rows:
        report.records += 1
        if row.seq != expected_seq:
            return Problem(
                chain,
                expected_seq,
                None,
                "missing",
                f"chain {chain}: record seq {expected_seq} is missing (deleted); "
                f"next present is seq {row.seq} (id {row.id})",
            )
        if row.prev_hash != prev:
            return Problem(
                chain,
                row.seq,
                row.id,
                "relinked",
                f"chain {chain} seq {row.seq} (id {row.id}) does not link to its predecessor",
            )
        computed = record_hash(
            chain=row.chain,
            seq=row.seq,
            at=row.at,
            actor_kind=row.actor_kind,
            actor_id=row.actor_id,
            action=row.action,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            detail=row.detail,
            prev_hash=row.prev_hash,
        )
        if computed != row.hash:
            return Problem(
                chain,
                row.seq,
                row.id,
                "edited",
                f"chain {chain} seq {row.seq} (id {row.id}) was edited: its hash does not "
                "match its content",
            )
        if signed is not None and row.seq == signed[0] and row.hash != signed[1]:
            return Problem(
                chain,
                row.seq,
                row.id,
                "rewritten",
                f"chain {chain} seq {row.seq} (id {row.id}) differs from the signed "
                "checkpoint: the tail from here on was rewritten",
            )
        prev = row.hash
        expected_seq += 1
    last_seq = expected_seq - 1
    if signed is not None and last_seq < signed[0]:
        return Problem(
            chain,
            last_seq + 1,
            None,
            "missing",
            f"chain {chain} ends at seq {last_seq} but the signed checkpoint has seq "
            f"{signed[0]}: records were deleted from the end",
        )
    if head is not None and head != (last_seq, prev):
        return Problem(
            chain,
            last_seq + 1,
            None,
            "head",
            f"chain {chain}: head says seq {head[0]} but the chain ends at seq {last_seq}",
        )
    return None


# -- reading records about given subjects ----------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    """One audit record as a reader sees it (the chain bookkeeping left out)."""

    id: int
    at: datetime
    actor_kind: str
    actor_id: str
    action: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]


def records_about(
    conn: Connection,
    subjects: Iterable[tuple[str, str]],
    *,
    limit: int = 50,
    offset: int = 0,
) -> list[AuditEntry]:
    """The records whose subject is one of ``subjects`` ((type, id) pairs), newest first.

    The kernel checks nothing here: the caller is a domain service that has checked the
    permission and that the actor may see every subject it passes (for example
    ``customers.service.audit_trail``). One indexed query (``ix_audit_record_subject``).
    """
    grouped: dict[str, set[str]] = {}
    for subject_type, subject_id in subjects:
        grouped.setdefault(subject_type, set()).add(subject_id)
    if not grouped or limit <= 0:
        return []
    t = table_of(AuditRecord)
    where = or_(
        *(
            and_(t.c.subject_type == subject_type, t.c.subject_id.in_(sorted(ids)))
            for subject_type, ids in sorted(grouped.items())
        )
    )
    # ``id`` grows with every insert whatever the chain: newest first across chains.
    query = select(t).where(where).order_by(t.c.id.desc()).offset(max(offset, 0)).limit(limit)
    return [
        AuditEntry(
            id=row.id,
            at=row.at,
            actor_kind=row.actor_kind,
            actor_id=row.actor_id,
            action=row.action,
            subject_type=row.subject_type,
            subject_id=row.subject_id,
            detail=json.loads(row.detail),
        )
        for row in conn.execute(query)
    ]
