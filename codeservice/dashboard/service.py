"""The dashboards' figures: SQL aggregates over the operators' records and the city's logs.

Every figure is a ``GROUP BY`` (or one ``COUNT``) computed in the database: no function here loads a day's
records into Python, only the grouped rows (24 hours, a few stations, reasons, gates). Counts, never people:
no account, resident, pid or subject leaves these functions.

An operator's figures take the operator's id and filter every statement by it; the callers (``api.py``,
``pages.py``) take that id from the signed-in operator key, never from the request, so one operator cannot
ask for another's.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from typing import Any

from sqlalchemy import and_, case, func, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from codeservice.accesslog.models import AccessLogEntry, AuditCheckpoint
from codeservice.certificates.models import Certificate, CertType, CheckRecord, Department
from codeservice.certificates.service import covering_size
from codeservice.consent.models import ConsentRequest, Office
from codeservice.dashboard import summaries
from codeservice.dashboard.summaries import LATE_SECONDS
from codeservice.transit.models import ClearingStatement, GateRecord, Operator, RideDevice
from codeservice.transit.service import TRANSIT_PLATFORM
from issuers.keyring import Keyring
from sdk.citytime import CITY_TZ, DAY_START_HOUR

#: The hours of an operating day, in order: 04:00 to 03:00 city time (the day ends at 04:00).
DAY_HOURS = [(DAY_START_HOUR + i) % 24 for i in range(24)]
#: A gate not heard from for this long is offline.
OFFLINE_SECONDS = 3600
#: The busiest stations or lines shown.
TOP = 10
#: An issuer key older than this is due for rotation (docs/dashboards.md).
ROTATE_AFTER_DAYS = 90
#: GROUP BY the first column of the SELECT: an expression with bound parameters (the zone, a bound of a day) is
#: not the same expression twice to PostgreSQL when written out again.
FIRST: ColumnElement[Any] = literal_column("1")
SECOND: ColumnElement[Any] = literal_column("2")
#: The city days the data office's daily figures cover, ending on the day asked.
CITY_DAYS = 7
AGAINST = ("last_week", "week_average")


# -- time in the database ------------------------------------------------------------------------------
def city_midnight(day: dt.date) -> dt.datetime:
    """00:00 of a city day, as an aware UTC moment."""
    return dt.datetime.combine(day, dt.time(0), CITY_TZ).astimezone(dt.UTC)


def _bound(db: Session, moment: dt.datetime, stored_in: dt.tzinfo = dt.UTC) -> Any:
    return summaries.bound(db, moment, stored_in)


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _per_hour(counts: Counter[int], divide: int = 1) -> list[float | int]:
    """24 values in ``DAY_HOURS`` order from counts by hour."""
    if divide == 1:
        return [counts.get(h, 0) for h in DAY_HOURS]
    return [round(counts.get(h, 0) / divide, 1) for h in DAY_HOURS]


# -- an operator's day ------------------------------------------------------------------------------
def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    """Most first, then by name."""
    return sorted(((name, n) for name, n in counts.items() if n), key=lambda kv: (-kv[1], kv[0]))


def operator_day(db: Session, operator: Operator, day: dt.date, against: str = "last_week") -> dict[str, Any]:
    """Taps and trips per hour of the operating day against a reference (the same weekday a week before, or
    the average of the seven days before), the busiest stations (metro, scenic) or lines (bus), the card-type
    mix and the refusals by reason of the day. A cleared day is read from the summaries clearing kept (plus the
    records received since), a day not cleared from its records (codeservice/dashboard/summaries.py)."""
    if against not in AGAINST:
        raise ValueError(f"against: one of {', '.join(AGAINST)}")
    reference = [day - dt.timedelta(days=7)] if against == "last_week" else [
        day - dt.timedelta(days=n) for n in range(1, 8)]
    groups = summaries.tap_groups(db, operator, day)
    taps_by_hour: Counter[int] = Counter()
    places: Counter[str] = Counter()
    cards: Counter[str] = Counter()
    refusals: Counter[str] = Counter()
    for (hour, place, card, accepted, reason), n in groups.items():
        taps_by_hour[hour] += n
        if accepted:
            cards[card] += n
            if place is not None:
                places[place] += n
        else:
            refusals[reason] += n
    reference_taps: Counter[int] = Counter()
    reference_trips: Counter[int] = Counter()
    for other in reference:
        for (hour, *_rest), n in summaries.tap_groups(db, operator, other).items():
            reference_taps[hour] += n
        reference_trips.update(summaries.trips_by_hour(db, operator.id, other))
    taps = _per_hour(taps_by_hour)
    trips = _per_hour(summaries.trips_by_hour(db, operator.id, day))
    return {
        "operator": operator.id, "operator_name": operator.name, "kind": operator.kind,
        "service_day": day.isoformat(), "against": against, "reference_days": [d.isoformat() for d in reference],
        "hours": [f"{h:02d}:00" for h in DAY_HOURS],
        "taps": taps, "taps_reference": _per_hour(reference_taps, len(reference)),
        "trips": trips, "trips_reference": _per_hour(reference_trips, len(reference)),
        "taps_total": sum(int(n) for n in taps), "trips_total": sum(int(n) for n in trips),
        "busiest": {"by": "line" if operator.kind == "bus" else "station",
                    "items": [{"name": name, "taps": n} for name, n in _ranked(places)[:TOP]]},
        "card_types": [{"card_type": name, "taps": n} for name, n in _ranked(cards)],
        "refusals": [{"reason": reason, "taps": n} for reason, n in _ranked(refusals)],
    }


def operator_gates(db: Session, operator: Operator, day: dt.date, now: float | None = None) -> dict[str, Any]:
    """The gates that recorded the day, each with its records of the day, its newest upload (of this day or
    any later one) and its late records; a gate not heard from for ``OFFLINE_SECONDS`` is offline, one with a
    record received more than ``LATE_SECONDS`` after its scan is late. Records waiting: the day's records not
    in its clearing statement (all of them before clearing, those received after it once cleared)."""
    now = time.time() if now is None else now
    rows = summaries.gate_groups(db, operator.id, day)
    newest = dict(db.execute(
        select(GateRecord.gate_id, func.max(GateRecord.received_at))
        .where(GateRecord.operator_id == operator.id, GateRecord.service_day > day,
               GateRecord.gate_id.in_(list(rows)))
        .group_by(GateRecord.gate_id)).all()) if rows else {}
    gates = []
    for gate_id, (records, late_records, last) in rows.items():
        later = newest.get(gate_id)
        moment = max(last, _aware(later)) if later is not None else last
        silent = int(now - moment.timestamp())
        gates.append({"gate_id": gate_id, "records": records, "late_records": late_records,
                      "last_upload": _iso(moment), "silent_seconds": max(silent, 0),
                      "offline": silent > OFFLINE_SECONDS, "late": late_records > 0})
    statement = db.get(ClearingStatement, (operator.id, day))
    waiting_filter = [GateRecord.operator_id == operator.id, GateRecord.service_day == day]
    if statement is not None:
        waiting_filter.append(GateRecord.received_at > _bound(db, _aware(statement.computed_at)))
    waiting = int(db.scalar(select(func.count()).select_from(GateRecord).where(*waiting_filter)) or 0)
    return {"operator": operator.id, "service_day": day.isoformat(), "offline_after_seconds": OFFLINE_SECONDS,
            "late_after_seconds": LATE_SECONDS, "gates": gates,
            "offline": sum(1 for g in gates if g["offline"]), "late": sum(1 for g in gates if g["late"]),
            "records_waiting": waiting, "cleared": statement is not None}


def _aware(moment: dt.datetime) -> dt.datetime:
    return summaries.aware(moment)


def operator_clearing(db: Session, operator: Operator, day: dt.date) -> dict[str, Any]:
    """The day's clearing statement in short, with where its CSV is and the CSV's SHA-256; ``null`` before
    clearing."""
    statement = db.get(ClearingStatement, (operator.id, day))
    body: dict[str, Any] = {"operator": operator.id, "service_day": day.isoformat(), "statement": None}
    if statement is not None:
        body["statement"] = {
            "records": statement.records, "duplicates": statement.duplicates, "trips": statement.trips,
            "fare_total": statement.fare_total, "discount_total": statement.discount_total,
            "capped_total": statement.capped_total, "charged_total": statement.charged_total,
            "by_status": statement.by_status, "by_card_type": statement.by_card_type,
            "currency": "CNY", "amounts_in": "cents", "sha256": statement.digest,
            "computed_at": _iso(statement.computed_at),
            "csv_url": f"/api/v1/operators/{operator.id}/clearing/{day.isoformat()}/trips.csv",
        }
    return body


# -- the city's data office -------------------------------------------------------------------------
def _day_bucket(db: Session, column: Any, days: list[dt.date], stored_in: dt.tzinfo) -> ColumnElement[Any]:
    """Which of *days* (city days, in order) a timestamp column falls on: 0, 1, ... (the last for any later)."""
    bounds = [_bound(db, city_midnight(d), stored_in) for d in days[1:]]
    return case(*[(column < b, i) for i, b in enumerate(bounds)], else_=len(days) - 1)


def city_day(db: Session, day: dt.date) -> dict[str, Any]:
    """Yes/no checks per department per city day (the ``CITY_DAYS`` days ending on *day*), consent requests of
    *day* by outcome and by office, and the access log's entries a day."""
    days = [day - dt.timedelta(days=n) for n in range(CITY_DAYS - 1, -1, -1)]
    start, end = city_midnight(days[0]), city_midnight(day + dt.timedelta(days=1))
    bucket = _day_bucket(db, CheckRecord.at, days, CITY_TZ).label("d")
    checks = db.execute(
        select(CertType.department_id, bucket, CheckRecord.answer, func.count())
        .join(CertType, CertType.code == CheckRecord.cert_type)
        .where(CheckRecord.at >= _bound(db, start, CITY_TZ), CheckRecord.at < _bound(db, end, CITY_TZ))
        .group_by(FIRST, SECOND, CheckRecord.answer)).all()
    departments = dict(db.execute(select(Department.id, Department.name)).all())
    per_dept: dict[str, dict[str, list[int]]] = {}
    for dept, index, answer, n in checks:
        entry = per_dept.setdefault(dept, {"yes": [0] * CITY_DAYS, "no": [0] * CITY_DAYS})
        entry["yes" if answer else "no"][int(index)] += int(n)
    day_start, day_end = _bound(db, city_midnight(day)), _bound(db, end)
    consent = db.execute(
        select(ConsentRequest.office_id, ConsentRequest.status, func.count())
        .where(ConsentRequest.created_at >= day_start, ConsentRequest.created_at < day_end)
        .group_by(ConsentRequest.office_id, ConsentRequest.status)).all()
    offices = dict(db.execute(select(Office.id, Office.name)).all())
    by_outcome: dict[str, int] = {}
    by_office: dict[str, dict[str, int]] = {}
    for office, status, n in consent:
        by_outcome[status] = by_outcome.get(status, 0) + int(n)
        by_office.setdefault(office, {})[status] = int(n)
    # the log keeps its times as ISO 8601 UTC text: compare with text bounds of the same form
    text_bounds = [city_midnight(d).strftime("%Y-%m-%dT%H:%M:%S") for d in [*days, day + dt.timedelta(days=1)]]
    at = AccessLogEntry.at
    growth_row = db.execute(select(*[
        func.sum(case((and_(at >= text_bounds[i], at < text_bounds[i + 1]), 1), else_=0)) for i in range(CITY_DAYS)
    ]).where(at >= text_bounds[0], at < text_bounds[-1])).one()
    return {
        "day": day.isoformat(), "days": [d.isoformat() for d in days],
        "checks": [{"department": dept, "department_name": departments.get(dept, dept), **counts}
                   for dept, counts in sorted(per_dept.items())],
        "consent": {
            "by_outcome": [{"status": s, "requests": n} for s, n in sorted(by_outcome.items())],
            "by_office": [{"office": o, "office_name": offices.get(o, o), "by_status": counts,
                           "requests": sum(counts.values())} for o, counts in sorted(by_office.items())],
        },
        "access_log": {"entries_per_day": [int(n or 0) for n in growth_row]},
    }


def city_state(db: Session, keyring: Keyring, *, status_list_size: int, status_ttl: int, status_validity: int,
               now: float | None = None) -> dict[str, Any]:
    """The access log's size and its newest signed checkpoint, every status list's size and set entries, and
    the issuer keys with their age and rotation due date."""
    now = time.time() if now is None else now
    entries = int(db.scalar(select(func.count()).select_from(AccessLogEntry)) or 0)
    newest = db.execute(select(AuditCheckpoint.seq).order_by(AuditCheckpoint.seq.desc()).limit(1)).scalar()
    checkpoints = int(db.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0)
    last_at = db.scalar(select(AccessLogEntry.at).order_by(AccessLogEntry.seq.desc()).limit(1))
    lists = []
    cert_rows = db.execute(
        select(Certificate.department_id, func.max(Certificate.status_index),
               func.sum(case((Certificate.status == "suspended", 1), else_=0)),
               func.sum(case((Certificate.status == "revoked", 1), else_=0)), func.count())
        .group_by(Certificate.department_id)).all()
    held = {dept: (highest, suspended, revoked, n) for dept, highest, suspended, revoked, n in cert_rows}
    for dept in db.scalars(select(Department.id).order_by(Department.id)):
        highest, suspended, revoked, n = held.get(dept, (None, 0, 0, 0))
        lists.append({"issuer": dept, "entries": covering_size(status_list_size, highest), "allocated": int(n),
                      "suspended": int(suspended or 0), "revoked": int(revoked or 0)})
    device = db.execute(select(func.max(RideDevice.status_index), func.count(),
                               func.sum(case((RideDevice.status == "revoked", 1), else_=0)))).one()
    lists.append({"issuer": TRANSIT_PLATFORM.id, "entries": covering_size(status_list_size, device[0]),
                  "allocated": int(device[1]), "suspended": None, "revoked": int(device[2] or 0)})
    keys = []
    for key in keyring.list_keys():
        if key.get("retired_at") is not None:
            continue
        created = int(key["created_at"])
        due = created + ROTATE_AFTER_DAYS * 86400
        keys.append({"issuer": key["issuer"], "kid": key["kid"], "created_at": _iso(dt.datetime.fromtimestamp(
            created, dt.UTC)), "age_days": int((now - created) // 86400), "rotate_by": _iso(
            dt.datetime.fromtimestamp(due, dt.UTC)), "due": now >= due})
    keys.sort(key=lambda k: (not k["due"], k["rotate_by"], k["issuer"]))
    return {
        "access_log": {"entries": entries, "last_entry_at": last_at, "checkpoints": checkpoints,
                       "last_checkpoint_seq": newest, "entries_after_checkpoint": entries - (newest or 0)},
        "status_lists": {"ttl_seconds": status_ttl, "validity_seconds": status_validity, "lists": lists},
        "keys": {"rotate_after_days": ROTATE_AFTER_DAYS, "due": sum(1 for k in keys if k["due"]), "keys": keys},
    }


def baseline_count(db: Session, operator_id: str, day: dt.date) -> int:
    """A plain ``COUNT(*)`` of the operator's day: what bench/dashboard.py measures the figures against."""
    return int(db.scalar(select(func.count()).select_from(GateRecord).where(
        GateRecord.operator_id == operator_id, GateRecord.service_day == day)) or 0)

