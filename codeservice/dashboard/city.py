"""The data office's figures added to ``city/day`` and ``city/state``, and ``city/points``: certificate shows and
pulls per department per day, the access log's audit runs, and service use per point per hour.

Each is a ``GROUP BY`` or one row read in the database (the counts of ``counts.py``, the service points'
records through :func:`codeservice.venues.points.use_per_point_per_hour`); counts, never people: no pid,
certificate id or resident leaves these functions (the overdraws are counted, not named).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from codeservice.certificates.models import Department
from codeservice.dashboard.counts import PULL, SHOW, AuditRun, CertificateUseCount
from codeservice.dashboard.service import DAY_HOURS, _bound, _iso
from codeservice.venues.models import Service, ServicePoint
from codeservice.venues.points import overdraws, use_per_point_per_hour

#: ``runs_7d``: the audit runs of the last seven days (168 hours before now).
AUDIT_WINDOW_SECONDS = 7 * 86400


def certificate_shows(db: Session, days: list[dt.date]) -> list[dict[str, Any]]:
    """Per issuing department with any use on *days* (city dates, in order): certificates shown and verified
    online (``show``) and fetched by a clerk with consent (``pull``), one count a day."""
    rows = db.execute(
        select(CertificateUseCount.department_id, CertificateUseCount.day, CertificateUseCount.kind,
               func.sum(CertificateUseCount.n))
        .where(CertificateUseCount.day >= days[0], CertificateUseCount.day <= days[-1])
        .group_by(CertificateUseCount.department_id, CertificateUseCount.day, CertificateUseCount.kind)).all()
    index = {d: i for i, d in enumerate(days)}
    per_dept: dict[str, dict[str, list[int]]] = {}
    for dept, day, kind, n in rows:
        if kind not in (SHOW, PULL) or day not in index:
            continue
        entry = per_dept.setdefault(dept, {SHOW: [0] * len(days), PULL: [0] * len(days)})
        entry[kind][index[day]] += int(n)
    names = dict(db.execute(select(Department.id, Department.name)
                            .where(Department.id.in_(list(per_dept)))).all()) if per_dept else {}
    return [{"department": dept, "department_name": names.get(dept, dept), **counts,
             "show_total": sum(counts[SHOW]), "pull_total": sum(counts[PULL])}
            for dept, counts in sorted(per_dept.items())]


def _run_json(run: AuditRun) -> dict[str, Any]:
    return {"at": _iso(run.at), "ok": run.ok, "entries_checked": run.entries_checked, "last_seq": run.last_seq,
            "reason": run.reason}


def audit_summary(db: Session, now: float | None = None) -> dict[str, Any]:
    """The newest audit run (``null`` before the first) and how many runs, and failed runs, the last seven days
    saw."""
    now = time.time() if now is None else now
    last = db.scalars(select(AuditRun).order_by(AuditRun.id.desc()).limit(1)).first()
    since = _bound(db, dt.datetime.fromtimestamp(now - AUDIT_WINDOW_SECONDS, dt.UTC))
    runs, failed = db.execute(select(func.count(), func.sum(case((AuditRun.ok.is_(False), 1), else_=0)))
                              .where(AuditRun.at >= since)).one()
    return {"last": _run_json(last) if last is not None else None, "runs_7d": int(runs or 0),
            "failed_7d": int(failed or 0), "window_seconds": AUDIT_WINDOW_SECONDS}


def service_points(db: Session, day: dt.date) -> dict[str, Any]:
    """Every service with every point: granted uses on the city date *day* per city hour (24 values in
    ``DAY_HOURS`` order, as the other charts), each point's total, and the residents the service found over its
    quota after the offline points uploaded (counted: ``overdraws``; the uses beyond the quota:
    ``overdrawn_uses``)."""
    counts: dict[tuple[str, str], dict[int, int]] = {}
    for row in use_per_point_per_hour(db, day):
        counts.setdefault((row["service"], row["point"]), {})[row["hour"]] = row["uses"]
    points_of: dict[str, list[ServicePoint]] = {}
    for point in db.scalars(select(ServicePoint).order_by(ServicePoint.service_id, ServicePoint.id)):
        points_of.setdefault(point.service_id, []).append(point)
    services = []
    for service in db.scalars(select(Service).order_by(Service.id)):
        points: list[dict[str, Any]] = []
        for point in points_of.get(service.id, []):
            hours = counts.get((service.id, point.id), {})
            per_hour = [hours.get(h, 0) for h in DAY_HOURS]
            points.append({"point": point.id, "point_name": point.name, "per_hour": per_hour,
                           "total": sum(per_hour)})
        over = overdraws(db, service.id, day)
        services.append({"service": service.id, "service_name": service.name, "quota_per_day": service.daily_quota,
                         "points": points, "total": sum(int(p["total"]) for p in points), "overdraws": len(over),
                         "overdrawn_uses": sum(int(o["over"]) for o in over)})
    return {"day": day.isoformat(), "hours": [f"{h:02d}:00" for h in DAY_HOURS], "services": services}
