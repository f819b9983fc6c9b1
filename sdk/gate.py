"""A gate: verify, apply the gate's rules, write the record, then open (docs/transit.md).

A :class:`Gate` is one bus reader, metro gate or scenic turnstile. For every scan it

1. verifies the code offline (:class:`~sdk.verifier.Verifier`: trust list, status lists, scene);
2. refuses, before the code is spent, a ride whose fare at this gate is above the credential's limit;
3. spends the code on its replay guard: the gate's own store, and the operator's shared guard when the
   gate can reach it (so that the same code is refused at a second gate of the operator);
4. applies anti-passback (metro: no second entry without an exit; scenic site: one entry a day) and the
   site's daily capacity, again locally and, when reachable, operator-wide;
5. writes the record of the scan, accepted or refused, to its local store, in the same SQLite
   transaction as steps 3 and 4, and only then answers: a gate killed at any moment either has the
   record and the spent code, or neither.

Records wait in the store until :class:`sdk.upload.Uploader` hands them to the service, which stores
each exactly once and acknowledges it; only then are they marked sent.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sdk.citytime import service_day
from sdk.reasons import Reason
from sdk.result import Result, refused_like
from sdk.scene import Scene
from sdk.verifier import Verifier

DIRECTIONS = ("in", "out")
#: What a gate is: a metro gate (tap in, tap out), a bus reader (one tap a ride), a scenic turnstile.
GATE_KINDS = ("metro", "bus", "scenic")


class GateConfigError(ValueError):
    """A gate configuration that cannot be used."""


@dataclass(frozen=True)
class GateConfig:
    """Where a gate stands and what it enforces.

    ``fares``: the fare at this gate by card type in cents when it is known at the scan (a bus line's
    flat fare, a site's entry price); a ride whose credential allows less is refused. ``daily_capacity``:
    entries a scenic site admits a day (operator-wide when the shared guard answers, this gate's own
    count when it does not).
    """

    gate_id: str
    operator: str
    kind: str
    scene: Scene
    station: str | None = None
    line: str | None = None
    direction: str | None = None
    fares: Mapping[str, int] = field(default_factory=dict)
    daily_capacity: int | None = None
    #: How long an entry blocks a second entry without an exit (metro), in seconds, operator-wide: the shared
    #: guard sees every gate's entries and exits.
    passback_seconds: int = 4 * 3600
    #: Offline, a gate sees only its own scans (the exit may have been at another station): it refuses only a
    #: second entry at itself this soon after the first (a code handed back over the gate).
    offline_passback_seconds: int = 120

    def __post_init__(self) -> None:
        for name in ("gate_id", "operator"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > 64:
                raise GateConfigError(f"{name} must be 1 to 64 characters")
        if self.kind not in GATE_KINDS:
            raise GateConfigError(f"kind must be one of {', '.join(GATE_KINDS)}")
        if (self.kind == "metro") != (self.direction is not None) or (
                self.direction is not None and self.direction not in DIRECTIONS):
            raise GateConfigError("a metro gate has a direction (in or out), other gates none")
        if self.kind in ("metro", "scenic") and not self.station:
            raise GateConfigError(f"a {self.kind} gate names its station or site")
        if self.kind == "bus" and not self.line:
            raise GateConfigError("a bus reader names its line")
        if any(type(v) is not int or v < 0 for v in self.fares.values()):
            raise GateConfigError("fares must be non-negative whole cents")
        if self.daily_capacity is not None and self.daily_capacity <= 0:
            raise GateConfigError("daily_capacity must be positive")
        if self.passback_seconds <= 0 or self.offline_passback_seconds <= 0:
            raise GateConfigError("passback_seconds and offline_passback_seconds must be positive")


class SharedGuard(Protocol):
    """The operator's guard, shared by its gates while they are online (the service's Redis).

    Every method raises when the guard cannot be reached; the gate then goes on with its own store.
    """

    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool: ...

    def enter(self, scope: str, account: str, keep_until: float) -> bool: ...

    def leave(self, scope: str, account: str) -> None: ...

    def take(self, scope: str, limit: int, keep_until: float) -> bool: ...


class GateStore:
    """The gate's own SQLite file: records waiting for upload, the replay guard, who is inside, and
    today's admissions. Every scan is one transaction (``synchronous=FULL``: on disk before the gate
    opens)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS records (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, record_id TEXT NOT NULL UNIQUE, body TEXT NOT NULL,
                state TEXT NOT NULL DEFAULT 'pending', note TEXT, created_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS records_state ON records (state, seq);
            CREATE TABLE IF NOT EXISTS replay (
                scope TEXT NOT NULL, code_id BLOB NOT NULL, keep_until REAL NOT NULL, PRIMARY KEY (scope, code_id));
            CREATE TABLE IF NOT EXISTS inside (
                scope TEXT NOT NULL, account TEXT NOT NULL, keep_until REAL NOT NULL, PRIMARY KEY (scope, account));
            CREATE TABLE IF NOT EXISTS admitted (scope TEXT PRIMARY KEY, count INTEGER NOT NULL,
                keep_until REAL NOT NULL);
            """
        )
        self._lock = threading.RLock()
        self._in_tx = False

    # -- transactions -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One scan or one acknowledgement: all of it on disk, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_tx = True
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._in_tx = False

    # -- guards (called inside a scan's transaction) -------------------------------------------------
    def first_use(self, scope: str, code_id: bytes, keep_until: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        self._db.execute("DELETE FROM replay WHERE scope = ? AND code_id = ? AND keep_until < ?",
                         (scope, code_id, now))
        cur = self._db.execute("INSERT OR IGNORE INTO replay (scope, code_id, keep_until) VALUES (?, ?, ?)",
                               (scope, code_id, keep_until))
        return cur.rowcount == 1

    def enter(self, scope: str, account: str, keep_until: float, now: float) -> bool:
        row = self._db.execute("SELECT keep_until FROM inside WHERE scope = ? AND account = ?",
                               (scope, account)).fetchone()
        if row is not None and row[0] > now:
            return False
        self._db.execute("INSERT OR REPLACE INTO inside (scope, account, keep_until) VALUES (?, ?, ?)",
                         (scope, account, keep_until))
        return True

    def leave(self, scope: str, account: str) -> None:
        self._db.execute("DELETE FROM inside WHERE scope = ? AND account = ?", (scope, account))

    def take(self, scope: str, limit: int, keep_until: float, now: float) -> bool:
        row = self._db.execute("SELECT count, keep_until FROM admitted WHERE scope = ?", (scope,)).fetchone()
        count = row[0] if row is not None and row[1] > now else 0
        if count >= limit:
            return False
        self._db.execute("INSERT OR REPLACE INTO admitted (scope, count, keep_until) VALUES (?, ?, ?)",
                         (scope, count + 1, keep_until))
        return True

    def forget_expired(self, now: float | None = None) -> None:
        """Drop replay ids and passback entries that can no longer matter (call now and then)."""
        now = time.time() if now is None else now
        with self.transaction():
            for table in ("replay", "inside", "admitted"):
                self._db.execute(f"DELETE FROM {table} WHERE keep_until < ?", (now,))  # noqa: S608 - fixed names

    # -- records -------------------------------------------------------------------------------
    def add_record(self, record: Mapping[str, Any]) -> None:
        self._db.execute("INSERT INTO records (record_id, body, created_at) VALUES (?, ?, ?)",
                         (record["record_id"], json.dumps(record, separators=(",", ":")), time.time()))

    def pending(self, limit: int = 200) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT body FROM records WHERE state = 'pending' ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def mark(self, record_ids: list[str], state: str, note: str | None = None) -> int:
        """Mark records ``sent`` (the service acknowledged them) or ``rejected`` (it refused them)."""
        if state not in ("sent", "rejected"):
            raise ValueError("state must be sent or rejected")
        changed = 0
        with self.transaction():
            for record_id in record_ids:
                changed += self._db.execute(
                    "UPDATE records SET state = ?, note = ? WHERE record_id = ? AND state = 'pending'",
                    (state, note, record_id)).rowcount
        return changed

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM records GROUP BY state").fetchall()
        return {"pending": 0, "sent": 0, "rejected": 0} | {state: n for state, n in rows}

    def records(self) -> list[dict[str, Any]]:
        """Every record this gate holds, oldest first, with its upload state."""
        with self._lock:
            rows = self._db.execute("SELECT body, state FROM records ORDER BY seq").fetchall()
        return [json.loads(body) | {"upload_state": state} for body, state in rows]

    def close(self) -> None:
        self._db.close()


@dataclass(frozen=True)
class Decision:
    """What the gate did: open or not, the verification result, and the record it kept."""

    opened: bool
    result: Result
    record: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"opened": self.opened, "record_id": self.record["record_id"], **self.result.to_dict()}


class _GuardPair:
    """The verifier's replay guard at a gate: its own store, then the operator's shared guard."""

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool:
        gate = self._gate
        scope = f"{gate.config.operator}:{scope}"
        if not gate.store.first_use(scope, code_id, keep_until, gate.now):
            return False
        return gate._shared_call("first_use", scope, code_id, keep_until) is not False


class Gate:
    """One gate. Scans are serialised (a gate lets one person through at a time)."""

    def __init__(
        self, config: GateConfig, verifier: Verifier, store: GateStore, *, shared: SharedGuard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.verifier, self.store, self.shared, self.clock = config, verifier, store, shared, clock
        #: The gate keeps the replay guard: its store, and the operator's when online.
        verifier.replay_guard = _GuardPair(self)
        self._lock = threading.Lock()
        self._shared_ok: bool | None = None
        #: The time of the scan in progress.
        self.now = 0.0

    def _shared_call(self, method: str, *args: Any) -> Any:
        """Call the shared guard; None when there is none or it cannot be reached (then local rules)."""
        if self.shared is None:
            return None
        try:
            answer = getattr(self.shared, method)(*args)
        except Exception:
            self._shared_ok = False
            return None
        self._shared_ok = self._shared_ok is not False
        return answer if answer is not None else True

    def scan(self, code: Any, *, image: bool = False) -> Decision:
        """Verify one scanned text (or image, with ``image=True``), keep its record, and decide."""
        with self._lock:
            now = self.now = self.clock()
            self._shared_ok = None
            with self.store.transaction():
                text = self.verifier.read_image(code) if image else code
                if isinstance(text, Result):
                    result, text = text, None
                else:
                    result = self.verifier.verify(text, self.config.scene, at=now, before_use=self._fare_check)
                if result.accepted:
                    result = self._admit(result, now)
                record = self._record(result, now, text)
                self.store.add_record(record)
            return Decision(opened=result.accepted, result=result, record=record)

    # -- the gate's rules ----------------------------------------------------------------------------
    def _fare_check(self, passed: Result) -> Result | None:
        """A ride's per-ride fare limit (a scenic ticket is not a ride: it is charged in full)."""
        if passed.kind != "ride" or self.config.kind == "scenic" or not self.config.fares or passed.fare_limit is None:
            return None
        fare = self.config.fares.get(passed.card_type or "", self.config.fares.get("adult"))
        if fare is not None and fare > passed.fare_limit:
            return refused_like(passed, Reason.FARE_LIMIT_EXCEEDED,
                           f"fare {fare} cents, limit {passed.fare_limit} cents")
        return None

    def _enter(self, scope: str, account: str, until: float, local_until: float, now: float) -> bool:
        """Mark *account* as entered; False when it is already. The operator's guard decides when it answers
        (it knows every gate); this gate's own store only when it does not."""
        shared = self._shared_call("enter", scope, account, until)
        local = self.store.enter(scope, account, local_until, now)
        return bool(shared) if shared is not None else local

    def _leave(self, scope: str, account: str) -> None:
        self._shared_call("leave", scope, account)
        self.store.leave(scope, account)

    def _admit(self, passed: Result, now: float) -> Result:
        config = self.config
        account = passed.subject if passed.kind in ("ride", "id") else _holder_key(config.operator, passed.holder)
        if account is not None and config.kind == "metro":
            scope = f"{config.operator}:inside"
            if config.direction == "out":
                self._leave(scope, account)
            elif not self._enter(scope, account, now + config.passback_seconds,
                                 now + min(config.passback_seconds, config.offline_passback_seconds), now):
                return refused_like(passed, Reason.PASSBACK, "entered already without an exit")
        elif config.kind == "scenic":
            day = service_day(now)
            until = now + 36 * 3600
            entered = f"{config.operator}:{config.station}:{day}:entered"
            if account is not None and not self._enter(entered, account, until, until, now):
                return refused_like(passed, Reason.PASSBACK, "entered this site already today")
            if config.daily_capacity is not None:
                scope = f"{config.operator}:{config.station}:{day}:capacity"
                shared = self._shared_call("take", scope, config.daily_capacity, until)
                if shared is not False:
                    local_limit = config.daily_capacity if shared is None else 2**62  # online: counted, not limited
                    shared = self.store.take(scope, local_limit, until, now)
                if not shared:
                    if account is not None:  # not let in: not today's entry either
                        self._leave(entered, account)
                    return refused_like(passed, Reason.CAPACITY_REACHED,
                                   f"{config.daily_capacity} entries admitted on {day}")
        return passed

    def _record(self, result: Result, now: float, text: Any) -> dict[str, Any]:
        """The record of one scan: what the operator and clearing need, nothing more. An accepted ride or
        identity code is kept whole: the service checks its signatures before it charges anyone for it."""
        config = self.config
        entitlement = None
        if result.kind == "cert" and result.accepted and result.cert_type is not None:
            required = sorted(config.scene.cert_rules.get(result.cert_type, ()))
            entitlement = ":".join([result.cert_type, *required])
        return {
            "record_id": uuid.uuid4().hex,
            "gate_id": config.gate_id,
            "operator": config.operator,
            "scene": config.scene.name,
            "station": config.station,
            "line": config.line,
            "direction": config.direction,
            "at": round(now, 3),
            "accepted": result.accepted,
            "reason": result.reason.value,
            "kind": result.kind,
            # the transit account for a ride code, the pseudonymous id for an identity code; never a
            # certificate's holder (a free entry needs only the entitlement)
            "account": result.subject if result.kind in ("ride", "id") else None,
            "card_type": result.card_type,
            "fare_limit": result.fare_limit,
            "credential_id": result.credential_id,
            "code_id": result.code_id,
            "entitlement": entitlement,
            "online": self._shared_ok is True,
            "code": text.strip() if result.accepted and result.kind in ("ride", "id") and isinstance(text, str)
            else None,
        }


def _holder_key(operator: str, holder: str | None) -> str | None:
    """A certificate holder as the passback key: a digest, so that the holder's id is kept in no gate store
    and no shared guard (the same holder still gives the same key at every gate of the operator)."""
    if holder is None:
        return None
    return "h" + hashlib.sha256(f"{operator}\x00{holder}".encode()).hexdigest()[:31]

