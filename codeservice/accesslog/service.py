"""The access log: every request, decision, fetch, refusal and check, hash-chained.

Each entry's hash is SHA-256 over the previous entry's hash and the canonical JSON of the entry
(sorted keys, no spaces, UTF-8). The first entry chains to 64 zeros. Every ``CHECKPOINT_EVERY``
entries the audit key signs a checkpoint ``{seq, hash}`` (a JWS, typ ``auditcheckpoint+jwt``), so
that deleting the newest entries, or rewriting the whole chain after a change, is detected too.

Appending is safe with several writers: the next ``seq`` is the head's plus one. On PostgreSQL an append
is one statement (``citycode_access_log_append``, migration 0007) that takes a transaction-scoped advisory lock
(``APPEND_LOCK``), reads the head and inserts the entry, so writers take their turns in order, each holding the
lock for that statement and its commit. On SQLite, which serialises writers itself, the primary key turns a
race for a ``seq`` into a retry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import jwt
from sqlalchemy import Text, cast, func, select, text, type_coerce
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codeservice.accesslog.models import AccessLogEntry, AuditCheckpoint
from issuers.keyring import IssuerInfo, Signer
from sdk.cose import ALG_NAMES
from sdk.keys import PublicKey, alg_for_key, b64u_encode

GENESIS = "0" * 64
CHECKPOINT_EVERY = 1000
#: Signs the access log's checkpoints; its public key is in the trust list like any other.
AUDIT_OFFICE = IssuerInfo("city-audit", "City Access Log", ("audit",))
#: ``session.info`` key: the seqs a transaction appended (see ``checkpoint_fell_due``).
APPENDED = "citycode.accesslog.appended"
CHECKPOINT_TYPE = "auditcheckpoint+jwt"
#: PostgreSQL advisory lock key (per database) held from an append to the end of its transaction.
APPEND_LOCK = int.from_bytes(b"cc-alog", "big")
HASHED_FIELDS = ("seq", "at", "actor", "actor_label", "office", "subject", "action", "what", "purpose", "outcome")


#: The canonical JSON of an entry: what ``json.dumps(..., sort_keys=True, separators=(",", ":"),
#: ensure_ascii=False)`` makes (``dumps`` builds this very encoder on every call; one made once is the same).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    body = _CANONICAL.encode({k: fields[k] for k in HASHED_FIELDS}).encode()
    return hashlib.sha256(bytes.fromhex(prev_hash) + body).hexdigest()


# -- the same hash, as the walk computes it ------------------------------------------------------------
#: The columns the walk reads, in this order: the hashed fields, then the chain (``what`` as its stored text).
WALK_COLUMNS = ("seq", "at", "actor", "actor_label", "office", "subject", "action", "what", "purpose", "outcome",
                "prev_hash", "hash")
#: The canonical JSON of an entry with a slot for each field, keys sorted as ``entry_hash`` sorts them.
_BODY = "{" + ",".join(f'"{k}":%s' for k in sorted(HASHED_FIELDS)) + "}"
#: A JSON string of a ``str``, exactly as ``json.dumps(..., ensure_ascii=False)`` writes it (the C function it calls).
_json_string = json.encoder.encode_basestring
#: At most this many distinct stored ``what`` texts are remembered with their canonical JSON (then forgotten).
WHAT_CACHE_MAX = 4096


class _ChainHasher:
    """``entry_hash`` of a row as the walk reads it (``WALK_COLUMNS``), byte for byte, without a dict per entry.

    The body is the ``_BODY`` template filled with each value's JSON: ``seq`` with ``int.__repr__`` (what the
    encoder writes for an ``int``), strings with the encoder's own string function, ``None`` as ``null``.
    ``what`` is decoded as the column type decodes it (``json.loads``) and re-encoded canonically; a log holds
    few distinct ``what`` texts, so each one's canonical JSON is remembered (at most ``WHAT_CACHE_MAX``).
    A value of any other type (only a hand-edited database can hold one) takes ``entry_hash`` itself, so that
    the result, or the error, is the one ``entry_hash`` gives.
    """

    def __init__(self) -> None:
        self._what: dict[Any, str] = {}

    def what_json(self, stored: Any) -> str:
        canonical = self._what.get(stored)
        if canonical is None:
            canonical = _CANONICAL.encode(None if stored is None else json.loads(stored))
            if len(self._what) >= WHAT_CACHE_MAX:
                self._what.clear()
            self._what[stored] = canonical
        return canonical

    def __call__(self, prev_hash: str, row: Any) -> str:
        seq, at, actor, actor_label, office, subject, action, what, purpose, outcome, _prev, _hash = row
        string = _json_string
        try:
            if type(seq) is not int:
                raise TypeError("seq is not an int")
            body = _BODY % (string(action), string(actor), string(actor_label), string(at),
                            "null" if office is None else string(office), string(outcome),
                            "null" if purpose is None else string(purpose), int.__repr__(seq),
                            "null" if subject is None else string(subject), self.what_json(what))
        except TypeError:
            fields = dict(zip(HASHED_FIELDS, (seq, at, actor, actor_label, office, subject, action, what, purpose,
                                              outcome), strict=True))
            fields["what"] = None if what is None else json.loads(what)
            return entry_hash(prev_hash, fields)
        return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode()).hexdigest()


def _now_text(now: dt.datetime | None) -> str:
    moment = now or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Appended(NamedTuple):
    """The entry an append added: its place in the chain and its hash."""

    seq: int
    hash: str


#: PostgreSQL: the whole append in one round trip (migration 0007 says how, and why).
_PG_APPEND = text("SELECT appended_seq, appended_hash FROM citycode_access_log_append(:key, :at, :actor, "
                  ":actor_label, :office, :subject, :action, CAST(:what AS json), :purpose, :outcome, :head, :tail)")


def body_around_seq(fields: dict[str, Any]) -> tuple[bytes, bytes]:
    """The canonical JSON of an entry (``entry_hash``'s) in two parts, before and after the ``seq`` value:
    keys are sorted, and ``seq`` sits between ``purpose`` and ``subject``."""
    before = _CANONICAL.encode({k: fields[k] for k in HASHED_FIELDS if k < "seq"})
    after = _CANONICAL.encode({k: fields[k] for k in HASHED_FIELDS if k > "seq"})
    return (before[:-1] + ',"seq":').encode(), ("," + after[1:]).encode()


def append(
    session: Session,
    *,
    actor: str,
    actor_label: str,
    action: str,
    outcome: str,
    subject: str | None = None,
    office: str | None = None,
    what: list[Any] | None = None,
    purpose: str | None = None,
    signer: Signer | None = None,
    now: dt.datetime | None = None,
) -> Appended:
    """Append one entry in the caller's transaction. With *signer*, sign a checkpoint when due.

    On PostgreSQL one statement (``citycode_access_log_append``) takes the advisory lock, reads the head and
    inserts the entry, so the lock is held for that statement and the commit only. On SQLite the head is read
    and the entry inserted under a savepoint; a writer that lost the race for a ``seq`` reads the head again.
    """
    fields = {"seq": 0, "at": _now_text(now), "actor": actor, "actor_label": actor_label, "office": office,
              "subject": subject, "action": action, "what": list(what or []), "purpose": purpose,
              "outcome": outcome}
    if session.get_bind().dialect.name == "postgresql":
        head, tail = body_around_seq(fields)
        params = {**fields, "key": APPEND_LOCK, "what": json.dumps(fields["what"]), "head": head, "tail": tail}
        seq, chain_hash = session.execute(_PG_APPEND, params).one()
        appended = Appended(seq, chain_hash)
    else:
        appended = _append_in_turn(session, fields)
    session.info.setdefault(APPENDED, []).append(appended.seq)
    if signer is not None:
        checkpoint_if_due(session, signer)
    return appended


def _append_in_turn(session: Session, fields: dict[str, Any]) -> Appended:
    for _ in range(50):
        head = session.execute(select(AccessLogEntry.seq, AccessLogEntry.hash)
                               .order_by(AccessLogEntry.seq.desc()).limit(1)).first()
        seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
        fields = {**fields, "seq": seq}
        entry = AccessLogEntry(**fields, prev_hash=prev, hash=entry_hash(prev, fields))
        try:
            with session.begin_nested():
                session.add(entry)
                session.flush()
        except IntegrityError:
            continue  # another writer took this seq: read the new head and try again
        return Appended(seq, entry.hash)
    raise RuntimeError("access log is too busy; try again")


def checkpoint_fell_due(session: Session) -> bool:
    """Whether *session* appended the entry at a multiple of ``CHECKPOINT_EVERY`` (its checkpoint is due)."""
    return any(seq % CHECKPOINT_EVERY == 0 for seq in session.info.get(APPENDED, ()))


def checkpoint(session: Session, signer: Signer, seq: int, chain_hash: str) -> AuditCheckpoint:
    claims = {"iss": signer.issuer, "seq": seq, "hash": chain_hash, "iat": int(time.time())}
    token = jwt.encode(claims, signer.private_key, algorithm=signer.alg_name,  # type: ignore[arg-type]
                       headers={"typ": CHECKPOINT_TYPE, "kid": b64u_encode(signer.kid)})
    mark = AuditCheckpoint(seq=seq, hash=chain_hash, token=token)
    session.merge(mark)
    session.flush()
    return mark


def checkpoint_if_due(session: Session, signer: Signer) -> AuditCheckpoint | None:
    """Sign the checkpoint at the newest multiple of ``CHECKPOINT_EVERY`` if nobody has yet.

    Called after writes; several workers may race, and the primary key lets one win.
    """
    head = session.scalar(select(func.max(AccessLogEntry.seq)))
    due = (head or 0) - (head or 0) % CHECKPOINT_EVERY
    if due == 0 or session.get(AuditCheckpoint, due) is not None:
        return None
    entry = session.get(AccessLogEntry, due)
    if entry is None:
        return None
    try:
        with session.begin_nested():
            return checkpoint(session, signer, due, entry.hash)
    except IntegrityError:
        return None  # another worker signed it a moment ago


def checkpoint_head(session: Session, signer: Signer) -> AuditCheckpoint | None:
    """Sign a checkpoint at the current head (for example at the end of a day)."""
    head = session.execute(select(AccessLogEntry.seq, AccessLogEntry.hash)
                           .order_by(AccessLogEntry.seq.desc()).limit(1)).first()
    return checkpoint(session, signer, head[0], head[1]) if head else None


def entries_about(session: Session, subject: str, limit: int = 100) -> list[AccessLogEntry]:
    """A subject's own entries, newest first."""
    return list(session.scalars(select(AccessLogEntry).where(AccessLogEntry.subject == subject)
                                .order_by(AccessLogEntry.seq.desc()).limit(limit)))


@dataclass
class AuditReport:
    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "checkpoints": self.checkpoints,
                "first_bad_seq": self.first_bad_seq, "problem": self.problem}


def _walk_rows(session: Session, batch: int) -> Iterator[Any]:
    """The log's rows (``WALK_COLUMNS``, ``what`` as its stored JSON text) in ``seq`` order, streamed: one
    query, fetched *batch* rows at a time (a server-side cursor on PostgreSQL), never the whole log in memory."""
    table = AccessLogEntry.__table__
    columns = [table.c[name] for name in WALK_COLUMNS]
    what = WALK_COLUMNS.index("what")
    # PostgreSQL sends json's text as stored (::text); on SQLite the column is text already: no decoder either way
    columns[what] = (cast(table.c.what, Text) if session.get_bind().dialect.name == "postgresql"
                     else type_coerce(table.c.what, Text)).label("what")
    result = session.execute(select(*columns).order_by(table.c.seq), execution_options={"yield_per": batch})
    try:
        yield from result
    finally:
        result.close()


def verify_chain(
    session: Session, public_key_for: Callable[[str], PublicKey | None], batch: int = 5000,
) -> AuditReport:
    """Walk the whole log in order; name the first entry that is altered, missing or out of place."""
    table = AuditCheckpoint.__table__
    tokens = session.execute(select(table.c.seq, table.c.hash, table.c.token)).all()
    keys: dict[str, PublicKey | None] = {}  # each key id looked up once, not once a checkpoint
    for seq, mark_hash, token in tokens:
        try:
            header = jwt.get_unverified_header(token)
            kid = str(header.get("kid", ""))
            if kid not in keys:
                keys[kid] = public_key_for(kid)
            key = keys[kid]
            if key is None or header.get("typ") != CHECKPOINT_TYPE:
                raise jwt.InvalidTokenError("unknown key")
            claims = jwt.decode(token, key, algorithms=[ALG_NAMES[alg_for_key(key)]])  # type: ignore[arg-type]
        except jwt.PyJWTError:
            return AuditReport(False, 0, len(tokens), seq, f"checkpoint at entry {seq} is not validly signed")
        if claims.get("seq") != seq or claims.get("hash") != mark_hash:
            return AuditReport(False, 0, len(tokens), seq, f"checkpoint at entry {seq} was altered")
    marks: dict[int, str] = {seq: mark_hash for seq, mark_hash, _token in tokens}
    del tokens
    hash_of = _ChainHasher()
    expected_seq, prev = 1, GENESIS
    count = 0
    for row in _walk_rows(session, batch):
        count += 1
        seq, prev_hash, row_hash = row[0], row[10], row[11]
        if seq != expected_seq:
            return AuditReport(False, count, len(marks), expected_seq,
                               f"entry {expected_seq} is missing (next is {seq})")
        if prev_hash != prev:
            return AuditReport(False, count, len(marks), seq,
                               f"entry {seq} does not follow entry {seq - 1} (deleted, inserted or reordered)")
        if hash_of(prev, row) != row_hash:
            return AuditReport(False, count, len(marks), seq, f"entry {seq} was altered")
        vouched = marks.get(seq)
        if vouched is not None and vouched != row_hash:
            return AuditReport(False, count, len(marks), seq,
                               f"the chain up to entry {seq} differs from its signed checkpoint (rewritten)")
        prev, expected_seq = row_hash, expected_seq + 1
    newest_mark = max(marks, default=0)
    if newest_mark >= expected_seq:
        return AuditReport(False, count, len(marks), expected_seq,
                           f"entries {expected_seq} to {newest_mark} are missing (a checkpoint vouches for them)")
    return AuditReport(True, count, len(marks))


def count_entries(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(AccessLogEntry)) or 0)
