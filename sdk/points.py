"""A service point (扫码吸氧 and the like): scan a resident's identity code, hand out one use within a daily quota
per resident across all the service's points, keep the record until it is uploaded exactly once
(docs/service-points.md).

The point keeps its records and guards in a :class:`sdk.gate.GateStore` (the records, the replay guard, and the
capped counters it uses for the quota) and uploads them with :class:`sdk.upload.Uploader` to
``POST /api/v1/points/records``. Online, the quota is shared: *shared* is asked first (``take(scope, limit,
keep_until)``, the service's counter in Redis through the API); when it cannot be reached the point enforces
what it knows itself, and the service reports the overdraws found once the records are uploaded.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sdk.citytime import CITY_TZ
from sdk.gate import GateStore
from sdk.result import Result
from sdk.scene import Scene
from sdk.verifier import Verifier

#: Where a point's records go (the Uploader's ``path``).
RECORDS_PATH = "/api/v1/points/records"
#: A counter of the day lives two days: long enough for any clock skew of the city day.
KEEP = 2 * 86400


def point_scene(service_id: str) -> Scene:
    """Identity codes only, each code once across the service's points (one scan, one use)."""
    return Scene(f"service-point:{service_id}", frozenset({"id"}), single_use=True,
                 replay_scope=f"service:{service_id}")


def city_day(at: float) -> str:
    """The city date (YYYY-MM-DD) of *at*: a quota is per resident per calendar day in city time."""
    return dt.datetime.fromtimestamp(at, CITY_TZ).date().isoformat()


def quota_scope(service_id: str, day: str, subject: str) -> str:
    return f"quota:{service_id}:{day}:{subject}"


class SharedQuota(Protocol):
    """The service's shared counter (online): True while the resident has uses left, then False."""

    def take(self, scope: str, limit: int, keep_until: float) -> bool: ...


@dataclass(frozen=True)
class PointConfig:
    point_id: str
    service_id: str
    daily_quota: int

    def __post_init__(self) -> None:
        if not self.point_id or not self.service_id:
            raise ValueError("a point needs its id and its service's")
        if type(self.daily_quota) is not int or not 1 <= self.daily_quota <= 1000:
            raise ValueError("daily quota: 1 to 1000")


#: Why a point refuses a genuine code: the resident's uses of the day are spent (not a verification reason: the
#: code itself passed).
QUOTA_EXHAUSTED = "quota_exhausted"


@dataclass(frozen=True)
class Use:
    """One scan's decision and the record kept of it. ``reason`` is the verifier's reason, or ``quota_exhausted``
    for a genuine code whose resident has no use left today."""

    granted: bool
    reason: str
    result: Result
    record: dict[str, Any]
    online: bool


class ServicePoint:
    """One point. Scans are serialised; each scan's record is on disk before the decision is known."""

    def __init__(self, config: PointConfig, verifier: Verifier, store: GateStore, *,
                 shared: SharedQuota | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config, self.verifier, self.store, self.shared, self.clock = config, verifier, store, shared, clock
        self.scene = point_scene(config.service_id)
        self._lock = threading.Lock()

    def _shared_take(self, scope: str, until: float) -> bool | None:
        """The shared counter's answer, or None when there is none or it cannot be reached."""
        if self.shared is None:
            return None
        try:
            return bool(self.shared.take(scope, self.config.daily_quota, until))
        except Exception:
            return None

    def scan(self, code: Any) -> Use:
        with self._lock:
            now = self.clock()
            with self.store.transaction():
                self.verifier.replay_guard = _StoreGuard(self.store, now)
                result = self.verifier.verify(code, self.scene, at=now)
                online, reason = False, result.reason.value
                if result.accepted and result.subject is not None:
                    day = city_day(now)
                    scope = quota_scope(self.config.service_id, day, result.subject)
                    shared = self._shared_take(scope, now + KEEP)
                    online = shared is not None
                    if online:  # the point counts every use it grants, also the shared ones: offline later, it
                        ok = bool(shared)  # knows them
                        if ok:
                            self.store.take(scope, 10**9, now + KEEP, now)
                    else:
                        ok = self.store.take(scope, self.config.daily_quota, now + KEEP, now)
                    if not ok:
                        reason = QUOTA_EXHAUSTED
                granted = result.accepted and reason != QUOTA_EXHAUSTED
                record = self._record(granted, reason, now, code, online)
                self.store.add_record(record)
            return Use(granted=granted, reason=reason, result=result, record=record, online=online)

    def _record(self, granted: bool, reason: str, now: float, code: Any, online: bool) -> dict[str, Any]:
        return {
            "record_id": secrets.token_hex(16), "point_id": self.config.point_id,
            "service_id": self.config.service_id, "at": round(now, 3), "accepted": granted,
            "reason": reason, "online": online,
            # the code itself, for the service to check that it was really shown (a point cannot make records up)
            "code": code if isinstance(code, str) and len(code) <= 2048 else None,
        }


class _StoreGuard:
    """The verifier's replay guard kept in the point's store, inside the scan's transaction."""

    def __init__(self, store: GateStore, now: float) -> None:
        self._store, self._now = store, now

    def first_use(self, scope: str, code_id: bytes, keep_until: float) -> bool:
        return self._store.first_use(scope, code_id, keep_until, self._now)
