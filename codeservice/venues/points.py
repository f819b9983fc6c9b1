"""Services with a daily quota per resident, handed out at points (扫码吸氧 and the like). docs/service-points.md.

Online, a point asks the service (``use_online``): the identity code is verified, and the resident's uses of the
city day are counted in the shared state (Redis ``INCR`` with an expiry, ``StateStore.count``, key ``quota_key``;
in-process state in the embedded default), so that two points of one service share one quota. Offline, a point
(sdk/points.py) enforces what it knows itself and uploads its records later (``ingest_records``: each stored once,
keyed by its record id, and its code checked as evidence); ``overdraws`` then reports the residents who got more
than the quota. ``use_per_point_per_hour`` is the aggregate the city dashboard shows.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from codeservice.clients.service import hash_key
from codeservice.errors import NotFound, Refused
from codeservice.identity.residents import frozen_or_none
from codeservice.state import StateStore
from codeservice.venues.models import PointRecord, Service, ServicePoint
from sdk.citytime import CITY_TZ
from sdk.points import KEEP, QUOTA_EXHAUSTED, city_day, point_scene
from sdk.verifier import Verifier

ID_PATTERN = re.compile(r"[a-z][a-z0-9-]{1,63}")
RECORD_ID = re.compile(r"[0-9a-f]{32}")
MAX_RECORDS = 500


class PointError(Refused):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PointNotFound(PointError, NotFound):
    pass


def _check_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise PointError("invalid_service", f"{what} id: 2 to 64 of a-z, 0-9 and '-', starting with a letter")
    return value


def _check_name(value: Any) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not 1 <= len(name) <= 200:
        raise PointError("invalid_service", "a name of 1 to 200 characters")
    return name


def add_service(session: Session, service_id: str, name: str, daily_quota: int) -> Service:
    _check_id(service_id, "service")
    if type(daily_quota) is not int or not 1 <= daily_quota <= 1000:
        raise PointError("invalid_service", "daily quota: a whole number from 1 to 1000")
    if session.get(Service, service_id) is not None:
        raise PointError("exists", f"service {service_id} exists")
    service = Service(id=service_id, name=_check_name(name), daily_quota=daily_quota)
    session.add(service)
    session.flush()
    return service


def get_service(session: Session, service_id: Any) -> Service:
    service = session.get(Service, service_id) if isinstance(service_id, str) else None
    if service is None:
        raise PointNotFound("unknown_service", f"no service {service_id!r}")
    return service


def add_point(session: Session, service_id: str, point_id: str, name: str) -> tuple[ServicePoint, str]:
    """A new point of *service_id* and its key (printed once; only its SHA-256 is kept)."""
    service = get_service(session, service_id)
    _check_id(point_id, "point")
    if session.get(ServicePoint, point_id) is not None:
        raise PointError("exists", f"point {point_id} exists")
    key = f"cc_p_{secrets.token_urlsafe(32)}"
    point = ServicePoint(id=point_id, service_id=service.id, name=_check_name(name), key_hash=hash_key(key))
    session.add(point)
    session.flush()
    return point, key


def point_by_key(session: Session, key: str) -> ServicePoint | None:
    return session.scalar(select(ServicePoint).where(ServicePoint.key_hash == hash_key(key)))


def service_json(service: Service) -> dict[str, Any]:
    return {"id": service.id, "name": service.name, "daily_quota": service.daily_quota}


def quota_key(service_id: str, day: str, subject: str) -> str:
    """The shared state's key of a resident's uses of a service on a city day: ``quota:{resident}:service:day``
    (tag: the resident, so that a Redis Cluster spreads quotas by resident and keeps one resident's together)."""
    return f"quota:{{{subject}}}:{service_id}:{day}"


def point_json(point: ServicePoint) -> dict[str, Any]:
    return {"id": point.id, "service": point.service_id, "name": point.name}


def _moment(at: float) -> tuple[dt.datetime, dt.date, int]:
    local = dt.datetime.fromtimestamp(at, CITY_TZ)
    return dt.datetime.fromtimestamp(at, dt.UTC), local.date(), local.hour


@dataclass(frozen=True)
class OnlineUse:
    granted: bool
    reason: str
    used: int
    quota: int
    record_id: str

    def to_dict(self) -> dict[str, Any]:
        return {"granted": self.granted, "reason": self.reason, "used": self.used, "quota": self.quota,
                "record_id": self.record_id}


def use_online(session: Session, state: StateStore, verifier: Verifier, point: ServicePoint, code: Any,
               now: float | None = None) -> OnlineUse:
    """One scan at an online point: the code verified (its scene: identity codes, each once across the service's
    points), then one use taken from the resident's shared quota of the city day; the use is recorded."""
    now = time.time() if now is None else now
    service = get_service(session, point.service_id)
    result = verifier.verify(code, point_scene(service.id), at=now)
    record_id = secrets.token_hex(16)
    if not result.accepted or result.subject is None:
        return OnlineUse(False, result.reason.value, 0, service.daily_quota, record_id)
    if frozen_or_none(session, result.subject) is not False:  # a lost phone, or no such resident: fail closed
        return OnlineUse(False, "suspended", 0, service.daily_quota, record_id)
    used = state.count(quota_key(service.id, city_day(now), result.subject), KEEP)
    granted = used <= service.daily_quota
    at, day, hour = _moment(now)
    session.add(PointRecord(record_id=record_id, point_id=point.id, service_id=service.id, resident=result.subject,
                            at=at, day=day, hour=hour, accepted=granted, online=True,
                            note=None if granted else QUOTA_EXHAUSTED))
    session.flush()
    return OnlineUse(granted, result.reason.value if granted else QUOTA_EXHAUSTED, min(used, service.daily_quota),
                     service.daily_quota, record_id)


def ingest_records(session: Session, point: ServicePoint, records: Any, evidence: Verifier) -> dict[str, Any]:
    """A point's uploaded records: each stored once by its record id (a second delivery is a duplicate), its code
    checked to be a genuine identity code as at the record's time; the subject is the code's, never the record's
    say-so. Answers like the gates' upload: ``stored``, ``duplicates``, ``rejected``."""
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise PointError("invalid_body", f"the body is {{\"records\": [...]}}, at most {MAX_RECORDS} records")
    stored: list[str] = []
    duplicates: list[str] = []
    rejected: list[dict[str, str]] = []
    seen: set[str] = set()
    for item in records:
        record_id = item.get("record_id") if isinstance(item, dict) else None
        if not isinstance(record_id, str) or not RECORD_ID.fullmatch(record_id):
            rejected.append({"record_id": str(record_id)[:64], "error": "invalid_record: record_id"})
            continue
        if record_id in seen or session.get(PointRecord, record_id) is not None:
            existing = session.get(PointRecord, record_id)
            if existing is not None and existing.point_id != point.id:
                rejected.append({"record_id": record_id, "error": "record_id_conflict: another point's record"})
            else:
                duplicates.append(record_id)
            continue
        problem = _record_problem(item, point)
        if problem is not None:
            rejected.append({"record_id": record_id, "error": problem})
            continue
        at = float(item["at"])
        result = evidence.evidence(item["code"], at=at)
        if not result.accepted or result.kind != "id" or result.subject is None:
            rejected.append({"record_id": record_id,
                             "error": f"unproven: the code was not genuine ({result.reason.value})"})
            continue
        moment, day, hour = _moment(at)
        session.add(PointRecord(record_id=record_id, point_id=point.id, service_id=point.service_id,
                                resident=result.subject, at=moment, day=day, hour=hour,
                                accepted=item["accepted"], online=item["online"],
                                note=None if item["accepted"] else str(item.get("reason", ""))[:64]))
        seen.add(record_id)
        stored.append(record_id)
    session.flush()
    return {"stored": stored, "duplicates": duplicates, "rejected": rejected}


def _record_problem(item: dict[str, Any], point: ServicePoint) -> str | None:
    if item.get("point_id") != point.id or item.get("service_id") != point.service_id:
        return "wrong_point: the record names another point or service"
    at = item.get("at")
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not 1_500_000_000 <= at <= time.time() + 3600:
        return "invalid_record: at"
    if type(item.get("accepted")) is not bool or type(item.get("online")) is not bool:
        return "invalid_record: accepted and online are booleans"
    if not isinstance(item.get("code"), str):
        return "invalid_record: code"
    return None


def overdraws(session: Session, service_id: str, day: dt.date) -> list[dict[str, Any]]:
    """The residents granted more uses on *day* than the service's quota (points that were offline), by SQL."""
    service = get_service(session, service_id)
    uses = func.count().label("uses")
    rows = session.execute(
        select(PointRecord.resident, uses, func.count(func.distinct(PointRecord.point_id)).label("points"))
        .where(PointRecord.service_id == service.id, PointRecord.day == day, PointRecord.accepted.is_(True))
        .group_by(PointRecord.resident).having(func.count() > service.daily_quota)
        .order_by(uses.desc(), PointRecord.resident))
    return [{"resident": resident, "uses": int(n), "quota": service.daily_quota, "over": int(n) - service.daily_quota,
             "points": int(points)} for resident, n, points in rows]


def use_per_point_per_hour(session: Session, day: dt.date) -> list[dict[str, Any]]:
    """For the city dashboard: granted uses on city date *day* per service, point and city hour (one SQL
    aggregate; hours without a use are absent)."""
    rows = session.execute(
        select(PointRecord.service_id, PointRecord.point_id, PointRecord.hour, func.count())
        .where(PointRecord.day == day, PointRecord.accepted.is_(True))
        .group_by(PointRecord.service_id, PointRecord.point_id, PointRecord.hour)
        .order_by(PointRecord.service_id, PointRecord.point_id, PointRecord.hour))
    return [{"service": service, "point": point, "hour": int(hour), "uses": int(n)}
            for service, point, hour, n in rows]
