"""The summaries clearing keeps for the dashboards (codeservice/dashboard/models.py, migration 0017), and the
grouped rows the dashboards read: from the summaries for the records received up to the day's clearing, plus a
raw ``GROUP BY`` of the records received after it (through ``ix_gate_records_operator_day_received``, a few
rows on a cleared day); a day never cleared is read raw.

:func:`refresh` runs inside clearing (``codeservice.transit.clearing.run_clearing``), in its transaction, after
the trips and the statement: it replaces the day's summaries with ``INSERT ... SELECT ... GROUP BY`` over the
day's records and trips. Counts only: no account, card or person is in a summary.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from sqlalchemy import Integer, and_, case, cast, delete, func, insert, literal, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from codeservice.dashboard.models import GateDay, SummarisedDay, TapHour, TripHour
from codeservice.transit.models import GateRecord, Operator, Trip
from sdk.citytime import CITY_TZ, CITY_TZ_NAME

#: A record received this long after its scan was late.
LATE_SECONDS = 1800

#: (hour, place, card type, accepted, reason): the key of a tap group; ``place`` None when the record has none.
TapKey = tuple[int, str | None, str, bool, str]


def _dialect(db: Session) -> str:
    return db.get_bind().dialect.name


def city_hour(db: Session, column: Any, day: dt.date) -> ColumnElement[Any]:
    """The hour of day (0 to 23) of a timestamp column in city time, computed by the database."""
    if _dialect(db) == "postgresql":
        return cast(func.extract("hour", func.timezone(CITY_TZ_NAME, column)), Integer)
    # SQLite keeps UTC text: shift it by the zone's offset on that day (the city's zones keep one offset a day)
    offset = CITY_TZ.utcoffset(dt.datetime.combine(day, dt.time(12)))
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    return cast(func.strftime("%H", column, f"{minutes:+d} minutes"), Integer)


def seconds_between(db: Session, later: Any, earlier: Any) -> ColumnElement[Any]:
    if _dialect(db) == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def bound(db: Session, moment: dt.datetime, stored_in: dt.tzinfo = dt.UTC) -> Any:
    """A moment as the column compares with it: aware on PostgreSQL; on SQLite naive, in the zone the column's
    writer used (SQLite keeps the wall-clock text: gate records and consent requests are written in UTC, yes/no
    checks in city time)."""
    return moment if _dialect(db) == "postgresql" else moment.astimezone(stored_in).replace(tzinfo=None)


def aware(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment


def _positions(first: int, last: int) -> list[ColumnElement[Any]]:
    """GROUP BY columns by position: an expression with bound parameters (the zone, an offset) is not the same
    expression twice to PostgreSQL when written out again."""
    return [literal_column(str(n)) for n in range(first, last + 1)]


def _place(kind: str) -> Any:
    return GateRecord.line if kind == "bus" else GateRecord.station


def _tap_columns(db: Session, kind: str, day: dt.date) -> list[Any]:
    return [city_hour(db, GateRecord.at, day), func.coalesce(_place(kind), ""),
            func.coalesce(GateRecord.card_type, "unknown"), GateRecord.accepted, GateRecord.reason]


def _late(db: Session) -> ColumnElement[Any]:
    return func.sum(case((seconds_between(db, GateRecord.received_at, GateRecord.at) > LATE_SECONDS, 1), else_=0))


def refresh(db: Session, operator_id: str, day: dt.date, through: dt.datetime) -> None:
    """Replace the summaries of the operator's day by those of its records received up to *through* (the
    statement's ``computed_at``) and of its trips, in the caller's transaction."""
    operator = db.get(Operator, operator_id)
    assert operator is not None
    for table in (TapHour, GateDay, TripHour, SummarisedDay):
        db.execute(delete(table).where(table.operator_id == operator_id, table.service_day == day))
    of_day = (GateRecord.operator_id == operator_id, GateRecord.service_day == day,
              GateRecord.received_at <= bound(db, aware(through)))
    keys: list[Any] = [literal(operator_id), literal(day)]
    db.execute(insert(TapHour).from_select(
        ["operator_id", "service_day", "hour", "place", "card_type", "accepted", "reason", "taps"],
        select(*keys, *_tap_columns(db, operator.kind, day), func.count()).where(*of_day).group_by(*_positions(3, 7))))
    db.execute(insert(GateDay).from_select(
        ["operator_id", "service_day", "gate_id", "records", "late_records", "last_received_at"],
        select(*keys, GateRecord.gate_id, func.count(), _late(db), func.max(GateRecord.received_at))
        .where(*of_day).group_by(GateRecord.gate_id)))
    db.execute(insert(TripHour).from_select(
        ["operator_id", "service_day", "hour", "trips"],
        select(*keys, city_hour(db, Trip.started_at, day), func.count())
        .where(Trip.operator_id == operator_id, Trip.service_day == day).group_by(*_positions(3, 3))))
    db.add(SummarisedDay(operator_id=operator_id, service_day=day, through=aware(through)))
    db.flush()


def _through(db: Session, operator_id: str, day: dt.date) -> dt.datetime | None:
    summarised = db.get(SummarisedDay, (operator_id, day))
    return aware(summarised.through) if summarised is not None else None


def tap_groups(db: Session, operator: Operator, day: dt.date) -> Counter[TapKey]:
    """The day's taps grouped by (city hour, place, card type, accepted, reason): the summary's rows plus the
    records received after it; every record of the day raw when the day has no summary."""
    through = _through(db, operator.id, day)
    groups: Counter[TapKey] = Counter()
    if through is not None:
        rows = db.execute(select(TapHour.hour, TapHour.place, TapHour.card_type, TapHour.accepted, TapHour.reason,
                                 TapHour.taps).where(TapHour.operator_id == operator.id, TapHour.service_day == day))
        for hour, place, card, accepted, reason, n in rows:
            groups[int(hour), place or None, card, bool(accepted), reason] += int(n)
    raw = [GateRecord.operator_id == operator.id, GateRecord.service_day == day]
    if through is not None:
        raw.append(GateRecord.received_at > bound(db, through))
    fresh: Any = db.execute(select(*_tap_columns(db, operator.kind, day), func.count()).where(*raw)
                            .group_by(*_positions(1, 5)))
    for hour, place, card, accepted, reason, n in fresh:
        groups[int(hour), place or None, card, bool(accepted), reason] += int(n)
    return groups


def trips_by_hour(db: Session, operator_id: str, day: dt.date) -> Counter[int]:
    """The day's trips per city hour: from the summary once cleared (trips are made by clearing alone)."""
    if _through(db, operator_id, day) is not None:
        rows = db.execute(select(TripHour.hour, TripHour.trips).where(
            TripHour.operator_id == operator_id, TripHour.service_day == day))
    else:
        rows = db.execute(select(city_hour(db, Trip.started_at, day), func.count()).where(
            Trip.operator_id == operator_id, Trip.service_day == day).group_by(*_positions(1, 1)))
    out: Counter[int] = Counter()
    for hour, n in rows:
        out[int(hour)] += int(n)
    return out


def gate_groups(db: Session, operator_id: str, day: dt.date) -> dict[str, tuple[int, int, dt.datetime]]:
    """Each gate of the day: (records, late records, newest upload of the day), from the summary plus the
    records received after it; raw when the day has no summary."""
    through = _through(db, operator_id, day)
    gates: dict[str, tuple[int, int, dt.datetime]] = {}

    def add(gate_id: str, records: int, late: int, last: dt.datetime) -> None:
        before = gates.get(gate_id)
        last = aware(last)
        if before is None:
            gates[gate_id] = (records, late, last)
        else:
            gates[gate_id] = (before[0] + records, before[1] + late, max(before[2], last))

    if through is not None:
        for gate_id, records, late, last in db.execute(
                select(GateDay.gate_id, GateDay.records, GateDay.late_records, GateDay.last_received_at)
                .where(GateDay.operator_id == operator_id, GateDay.service_day == day)):
            add(gate_id, int(records), int(late), last)
    raw = [GateRecord.operator_id == operator_id, GateRecord.service_day == day]
    if through is not None:
        raw.append(GateRecord.received_at > bound(db, through))
    for gate_id, records, late, last in db.execute(
            select(GateRecord.gate_id, func.count(), _late(db), func.max(GateRecord.received_at))
            .where(and_(*raw)).group_by(GateRecord.gate_id)):
        add(gate_id, int(records), int(late or 0), last)
    return dict(sorted(gates.items()))
