"""Daily clearing (清分): from an operator's accepted gate records of one operating day, the trips, what
each costs, and what the account platform owes the operator. Integer cents throughout.

Pairing (metro): each account's taps in time order; an entry followed by an exit is a trip priced by the
shortest distance between the two stations; an entry followed by another entry, or left open at the end of
the day, is an *unpaired entry*, and an exit with no entry before it an *unpaired exit*: both are charged the
operator's maximum fare; so are both taps of an entry and an exit further apart than the longest trip
(``max_minutes``, 240 by default: the same as the gates' anti-passback). Bus: every accepted tap is a ride at
its line's flat fare. Scenic site: every accepted entry is an entry at the site's price, free for an
entitlement shown by certificate.

Each trip's fare is discounted by card type, then a ride's is capped at the credential's per-ride fare limit
(the account is never charged more than that for a ride; the statement reports what the cap cut off). A scenic
ticket is not a ride: it is charged in full. A record with no
transit account (an identity code of a resident without one) is *unbillable*: listed, charged nothing.

A record whose code was charged under another record (``GateRecord.duplicate_of``: the same ride or identity code
brought back under a new record id, by any gate) is no trip: the statement counts it in ``duplicates``.

Running clearing again for the same day replaces that day's trips and statement (late uploads are
included); the statement's digest is the SHA-256 of its trips CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hashlib
import io
import itertools
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from codeservice.dashboard import summaries as dashboard_summaries
from codeservice.transit import clearing_sql, partitions
from codeservice.transit.fares import FareRules
from codeservice.transit.models import ClearingStatement, GateRecord, Operator, Trip
from codeservice.transit.service import TransitNotFound, rules_of
from sdk.citytime import service_day

CSV_COLUMNS = (
    "operator", "service_day", "status", "account", "card_type", "origin", "destination", "line", "started_at",
    "ended_at", "fare_cents", "discount_cents", "capped_cents", "charged_cents", "entry_record", "exit_record",
)
_RECORD_COLUMNS = (
    GateRecord.record_id, GateRecord.account, GateRecord.card_type, GateRecord.fare_limit, GateRecord.station,
    GateRecord.line, GateRecord.direction, GateRecord.at, GateRecord.kind, GateRecord.entitlement,
)


class TripRow(NamedTuple):
    """A trip as clearing computes it (the columns of a Trip row less its operator, day and id); a tuple, so
    that a day of a million trips stays small in memory."""

    status: str
    account: str | None
    card_type: str | None
    origin: str | None
    destination: str | None
    line: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    fare: int
    discount: int
    capped: int
    charged: int
    entry_record: str | None
    exit_record: str | None


#: The Trip columns a TripRow fills, in its order (for the bulk insert).
TRIP_COLUMNS = TripRow._fields


def _trip(rules: FareRules, status: str, fare: int, first: Any, last: Any | None, *, charge: bool = True,
          ) -> TripRow:
    if charge and first.account is not None:
        # the per-ride fare limit caps rides; a scenic ticket is not a ride and is charged in full
        limit = None if rules.kind == "scenic" else first.fare_limit
        discount, capped, charged = rules.charge(fare, first.card_type, limit)
    else:
        discount, capped, charged = fare, 0, 0
    return TripRow(
        status, first.account, first.card_type, first.station, last.station if last is not None else None,
        first.line, first.at, last.at if last is not None else None, fare, discount, capped, charged,
        first.record_id if status != "unpaired_exit" else None,
        last.record_id if last is not None else first.record_id if status == "unpaired_exit" else None,
    )


def compute_trips(rules: FareRules, records: Iterable[Any]) -> Iterator[TripRow]:
    """Trips from accepted records sorted by (account, at, record_id), in one pass (the records may be a
    stream); records have the attributes of ``_RECORD_COLUMNS``. A record without an account is unbillable
    (or a free entry by entitlement) and does not interrupt its neighbours' taps."""
    kind = rules.kind
    account: str | None = None
    open_entry = None
    for record in records:
        if record.account is None:
            if kind == "scenic" and record.kind == "cert" and record.entitlement:
                yield _trip(rules, "entitlement", rules.entry_price(record.station) or 0, record, None, charge=False)
            else:
                yield _trip(rules, "unbillable", 0, record, None, charge=False)
            continue
        if kind == "bus":
            yield _trip(rules, "ride", rules.bus_fare(record.line), record, None)
            continue
        if kind == "scenic":
            yield _trip(rules, "entry", rules.entry_price(record.station) or 0, record, None)
            continue
        if record.account != account:  # a new account: the previous one's entry left open is unpaired
            if open_entry is not None:
                yield _trip(rules, "unpaired_entry", rules.max_fare, open_entry, None)
            account, open_entry = record.account, None
        if record.direction == "in":
            if open_entry is not None:
                yield _trip(rules, "unpaired_entry", rules.max_fare, open_entry, None)
            open_entry = record
        elif record.direction == "out":
            if open_entry is not None and (record.at - open_entry.at).total_seconds() > rules.max_trip_seconds:
                yield _trip(rules, "unpaired_entry", rules.max_fare, open_entry, None)
                open_entry = None
            if open_entry is None:
                yield _trip(rules, "unpaired_exit", rules.max_fare, record, None)
                continue
            fare = rules.metro_fare(open_entry.station, record.station)
            yield _trip(rules, "paired", rules.max_fare if fare is None else fare, open_entry, record)
            open_entry = None
    if open_entry is not None:
        yield _trip(rules, "unpaired_entry", rules.max_fare, open_entry, None)


def totals(trips: Iterable[TripRow]) -> dict[str, Any]:
    by_status: Counter[str] = Counter()
    by_card: dict[str, dict[str, int]] = {}
    fare = discount = capped = charged = count = 0
    for trip in trips:
        count += 1
        by_status[trip.status] += 1
        fare += trip.fare
        discount += trip.discount
        capped += trip.capped
        charged += trip.charged
        card = by_card.get(trip.card_type or "none")
        if card is None:
            card = by_card[trip.card_type or "none"] = {"trips": 0, "charged": 0}
        card["trips"] += 1
        card["charged"] += trip.charged
    return {"trips": count, "fare_total": fare, "discount_total": discount, "capped_total": capped,
            "charged_total": charged, "by_status": dict(sorted(by_status.items())),
            "by_card_type": dict(sorted(by_card.items()))}


def _iso(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _csv_fields(operator_id: str, day_text: str, trip: Any) -> tuple[Any, ...]:
    """One CSV row of a trip (a dict, a TripRow or a Trip row)."""
    if not isinstance(trip, TripRow):
        get = trip.get if isinstance(trip, dict) else functools.partial(getattr, trip)
        trip = TripRow._make(get(name) for name in TRIP_COLUMNS)
    (status, account, card_type, origin, destination, line, started_at, ended_at, fare, discount, capped, charged,
     entry_record, exit_record) = trip
    return (operator_id, day_text, status, account or "", card_type or "", origin or "", destination or "",
            line or "", _iso(started_at), _iso(ended_at), fare, discount, capped, charged, entry_record or "",
            exit_record or "")


def csv_rows(operator_id: str, day: dt.date, trips: Iterable[Any]) -> Iterator[str]:
    """The trips as CSV lines (header first); *trips* are dicts, TripRows or Trip rows, in a stable order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    day_text = day.isoformat()
    for trip in trips:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(_csv_fields(operator_id, day_text, trip))
        yield buffer.getvalue()


def csv_digest(operator_id: str, day: dt.date, trips: Iterable[Any], *, chunk: int = 10_000) -> str:
    """SHA-256 of the CSV that :func:`csv_rows` writes, hashed a chunk of rows at a time."""
    digest = hashlib.sha256()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    day_text = day.isoformat()
    for part in _batched(trips, chunk):
        writer.writerows(_csv_fields(operator_id, day_text, trip) for trip in part)
        digest.update(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
    digest.update(buffer.getvalue().encode())
    return digest.hexdigest()


def _batched(items: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    """itertools.batched (Python 3.12) for 3.11."""
    iterator = iter(items)
    while part := tuple(itertools.islice(iterator, size)):
        yield part


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")  # date.fromisoformat alone also reads 2026-W01-1


def parse_day(text: str) -> dt.date | None:
    """An operating day written YYYY-MM-DD, or None for anything else."""
    if not _DAY.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def day_is_over(day: dt.date, now: float | None = None) -> bool:
    """Whether the operating day (04:00 to 04:00 city time) has ended, so that it may be cleared."""
    return day.isoformat() < service_day(time.time() if now is None else now)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _order(trip: Any) -> tuple[Any, ...]:
    get: Any = trip.get if isinstance(trip, dict) else lambda name: getattr(trip, name)
    return (_utc(get("started_at")), get("entry_record") or "", get("exit_record") or "")


#: Rows fetched from the server-side cursor at a time.
_STREAM_ROWS = 10_000


class _Counted:
    """Iterate over *rows*, counting them."""

    def __init__(self, rows: Iterable[Any]) -> None:
        self.rows, self.count = rows, 0

    def __iter__(self) -> Iterator[Any]:
        for row in self.rows:
            self.count += 1
            yield row


def _trip_order(trip: TripRow) -> tuple[Any, ...]:
    """:func:`_order` of a TripRow, without the per-trip getter."""
    return (_utc(trip.started_at), trip.entry_record or "", trip.exit_record or "")


def _insert_trips(session: Session, operator_id: str, day: dt.date, trips: list[TripRow]) -> None:
    """Store the trips in their order: COPY on PostgreSQL (psycopg), else executemany a chunk at a time."""
    connection = session.connection()
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        raw: Any = connection.connection.driver_connection
        columns = ", ".join(("operator_id", "service_day", *TRIP_COLUMNS))
        with raw.cursor() as cursor, cursor.copy(f"COPY {Trip.__tablename__} ({columns}) FROM STDIN") as copy:
            for trip in trips:
                copy.write_row((operator_id, day, *trip))
        return
    for part in _batched(trips, 5000):
        session.execute(insert(Trip), [{**t._asdict(), "operator_id": operator_id, "service_day": day} for t in part])


def run_clearing(session: Session, operator_id: str, day: dt.date, *, now: dt.datetime | None = None,
                 ) -> ClearingStatement:
    """Compute the day's trips and statement for the operator, replacing any earlier run.

    On PostgreSQL the trips are paired, priced and stored by set-based SQL inside the database
    (codeservice/transit/clearing_sql.py), with memory that does not grow with the day. Elsewhere (SQLite)
    the records are streamed into :func:`compute_trips`: only the trips, as tuples, are held in memory (they are
    sorted for the CSV digest). Both give the same statement and CSV (tests/test_clearing_sql.py);
    bench/transit.py measures a day of a million metro trips."""
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise TransitNotFound("not_found", f"no operator {operator_id!r}")
    rules = rules_of(operator)
    if session.connection().dialect.name == "postgresql":
        return _run_clearing_in_postgresql(session, operator_id, day, rules, now=now)
    of_day = (GateRecord.operator_id == operator_id, GateRecord.service_day == day, GateRecord.accepted.is_(True))
    duplicates = session.scalar(select(func.count()).select_from(GateRecord).where(
        *of_day, GateRecord.duplicate_of.is_not(None)))
    records = session.execute(
        select(*_RECORD_COLUMNS).where(*of_day, GateRecord.duplicate_of.is_(None))
        .order_by(GateRecord.account, GateRecord.at, GateRecord.record_id)
        .execution_options(yield_per=_STREAM_ROWS)
    )
    counted = _Counted(records)
    trips = sorted(compute_trips(rules, counted), key=_trip_order)
    digest = csv_digest(operator_id, day, trips)
    summary = totals(trips)
    session.execute(delete(Trip).where(Trip.operator_id == operator_id, Trip.service_day == day))
    if trips:
        _insert_trips(session, operator_id, day, trips)
    return _store_statement(session, operator_id, day, counted.count, int(duplicates or 0), summary, digest, now)


def _run_clearing_in_postgresql(session: Session, operator_id: str, day: dt.date, rules: FareRules, *,
                                now: dt.datetime | None) -> ClearingStatement:
    """:func:`run_clearing` as set-based SQL (codeservice/transit/clearing_sql.py): the trips are computed and
    stored by the database; Python reads them back in order, a chunk at a time, only for the CSV digest."""
    partitions.ensure_days(session, [day])  # the day's trips partition (there when the day has records)
    session.execute(delete(Trip).where(Trip.operator_id == operator_id, Trip.service_day == day))
    clearing_sql.insert_trips(session, operator_id, day, rules)
    records, duplicates = clearing_sql.record_counts(session, operator_id, day)
    summary = clearing_sql.trip_totals(session, operator_id, day)
    digest = csv_digest(operator_id, day, (TripRow._make(row)
                                           for row in clearing_sql.ordered_trips(session, operator_id, day)))
    return _store_statement(session, operator_id, day, records, duplicates, summary, digest, now)


def _store_statement(session: Session, operator_id: str, day: dt.date, records: int, duplicates: int,
                     summary: dict[str, Any], digest: str, now: dt.datetime | None) -> ClearingStatement:
    statement = session.get(ClearingStatement, (operator_id, day))
    if statement is None:
        statement = ClearingStatement(operator_id=operator_id, service_day=day)
        session.add(statement)
    statement.records = records
    statement.duplicates = duplicates
    statement.trips = summary["trips"]
    statement.fare_total = summary["fare_total"]
    statement.discount_total = summary["discount_total"]
    statement.capped_total = summary["capped_total"]
    statement.charged_total = summary["charged_total"]
    statement.by_status = summary["by_status"]
    statement.by_card_type = summary["by_card_type"]
    statement.digest = digest
    statement.computed_at = now or dt.datetime.now(dt.UTC)
    session.flush()
    # the dashboards' per-hour, per-gate and trip summaries of the day, as of this statement
    dashboard_summaries.refresh(session, operator_id, day, statement.computed_at)
    return statement


def statement_json(statement: ClearingStatement, operator: Operator) -> dict[str, Any]:
    return {
        "operator": operator.id, "operator_name": operator.name, "service_day": statement.service_day.isoformat(),
        "records": statement.records, "duplicates": statement.duplicates, "trips": statement.trips,
        "fare_total": statement.fare_total, "discount_total": statement.discount_total,
        "capped_total": statement.capped_total, "charged_total": statement.charged_total,
        # what the account platform pays the operator for the day: everything charged to the accounts
        "due_to_operator": statement.charged_total,
        "by_status": statement.by_status, "by_card_type": statement.by_card_type,
        "currency": "CNY", "amounts_in": "cents", "digest": statement.digest,
        "computed_at": _iso(statement.computed_at),
    }


def trips_of_day(session: Session, operator_id: str, day: dt.date) -> list[Trip]:
    """The stored trips of a cleared day in the order of the CSV (sorted here, not by the database, whose
    collation and NULL order differ between SQLite and PostgreSQL)."""
    trips = session.scalars(select(Trip).where(Trip.operator_id == operator_id, Trip.service_day == day)).all()
    return sorted(trips, key=_order)
