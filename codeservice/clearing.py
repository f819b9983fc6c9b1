"""Daily clearing (清分): from an operator's accepted gate records of one operating day, the trips, what
each costs, and what the account platform owes the operator. Integer cents throughout.

Pairing (metro): each account's taps in time order; an entry followed by an exit is a trip priced by the
shortest distance between the two stations; an entry followed by another entry, or left open at the end of
the day, is an *unpaired entry*, and an exit with no entry before it an *unpaired exit*: both are charged the
operator's maximum fare; so are both taps of an entry and an exit further apart than the longest trip
(``max_minutes``, 240 by default: the same as the gates' anti-passback). Bus: every accepted tap is a ride at
its line's flat fare. Scenic site: every accepted entry is an entry at the site's price, free for an
entitlement shown by certificate.

Each trip's fare is discounted by card type, then capped at the credential's per-ride fare limit (the
account is never charged more than that; the statement reports what the cap cut off). A record with no
transit account (an identity code of a resident without one) is *unbillable*: listed, charged nothing.

Running clearing again for the same day replaces that day's trips and statement (late uploads are
included); the statement's digest is the SHA-256 of its trips CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from codeservice.fares import FareRules
from codeservice.models import ClearingStatement, GateRecord, Operator, Trip
from codeservice.transit import TransitNotFound, rules_of

CSV_COLUMNS = (
    "operator", "service_day", "status", "account", "card_type", "origin", "destination", "line", "started_at",
    "ended_at", "fare_cents", "discount_cents", "capped_cents", "charged_cents", "entry_record", "exit_record",
)
_RECORD_COLUMNS = (
    GateRecord.record_id, GateRecord.account, GateRecord.card_type, GateRecord.fare_limit, GateRecord.station,
    GateRecord.line, GateRecord.direction, GateRecord.at, GateRecord.kind, GateRecord.entitlement,
)


def _trip(rules: FareRules, status: str, fare: int, first: Any, last: Any | None, *, charge: bool = True,
          ) -> dict[str, Any]:
    if charge and first.account is not None:
        discount, capped, charged = rules.charge(fare, first.card_type, first.fare_limit)
    else:
        discount, capped, charged = fare, 0, 0
    return {
        "status": status, "account": first.account, "card_type": first.card_type,
        "origin": first.station, "destination": last.station if last is not None else None, "line": first.line,
        "started_at": first.at, "ended_at": last.at if last is not None else None,
        "fare": fare, "discount": discount, "capped": capped, "charged": charged,
        "entry_record": first.record_id if status != "unpaired_exit" else None,
        "exit_record": (last.record_id if last is not None else
                        first.record_id if status == "unpaired_exit" else None),
    }


def compute_trips(rules: FareRules, records: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """Trips from accepted records sorted by (account, at, record_id); records have the attributes of
    ``_RECORD_COLUMNS``."""
    billable = [r for r in records if r.account is not None]
    for record in records:
        if record.account is None:
            if rules.kind == "scenic" and record.kind == "cert" and record.entitlement:
                yield _trip(rules, "entitlement", rules.entry_price(record.station) or 0, record, None, charge=False)
            else:
                yield _trip(rules, "unbillable", 0, record, None, charge=False)
    if rules.kind == "bus":
        for record in billable:
            yield _trip(rules, "ride", rules.bus_fare(record.line), record, None)
        return
    if rules.kind == "scenic":
        for record in billable:
            yield _trip(rules, "entry", rules.entry_price(record.station) or 0, record, None)
        return
    for _account, taps in itertools.groupby(billable, key=lambda r: r.account):
        open_entry = None
        for tap in taps:
            if tap.direction == "in":
                if open_entry is not None:
                    yield _trip(rules, "unpaired_entry", rules.max_fare, open_entry, None)
                open_entry = tap
            elif tap.direction == "out":
                if open_entry is not None and (tap.at - open_entry.at).total_seconds() > rules.max_trip_seconds:
                    yield _trip(rules, "unpaired_entry", rules.max_fare, open_entry, None)
                    open_entry = None
                if open_entry is None:
                    yield _trip(rules, "unpaired_exit", rules.max_fare, tap, None)
                    continue
                fare = rules.metro_fare(open_entry.station, tap.station)
                yield _trip(rules, "paired", rules.max_fare if fare is None else fare, open_entry, tap)
                open_entry = None
        if open_entry is not None:
            yield _trip(rules, "unpaired_entry", rules.max_fare, open_entry, None)


def totals(trips: Iterable[dict[str, Any]]) -> dict[str, Any]:
    by_status: Counter[str] = Counter()
    by_card: dict[str, dict[str, int]] = {}
    sums = {"fare": 0, "discount": 0, "capped": 0, "charged": 0}
    count = 0
    for trip in trips:
        count += 1
        by_status[trip["status"]] += 1
        for name in sums:
            sums[name] += trip[name]
        card = by_card.setdefault(trip["card_type"] or "none", {"trips": 0, "charged": 0})
        card["trips"] += 1
        card["charged"] += trip["charged"]
    return {"trips": count, "fare_total": sums["fare"], "discount_total": sums["discount"],
            "capped_total": sums["capped"], "charged_total": sums["charged"],
            "by_status": dict(sorted(by_status.items())), "by_card_type": dict(sorted(by_card.items()))}


def _iso(moment: dt.datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def csv_rows(operator_id: str, day: dt.date, trips: Iterable[Any]) -> Iterator[str]:
    """The trips as CSV lines (header first); *trips* are dicts or Trip rows, in a stable order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    yield buffer.getvalue()
    for trip in trips:
        get = trip.get if isinstance(trip, dict) else lambda name, t=trip: getattr(t, name)
        buffer.seek(0)
        buffer.truncate()
        writer.writerow((operator_id, day.isoformat(), get("status"), get("account") or "", get("card_type") or "",
                         get("origin") or "", get("destination") or "", get("line") or "", _iso(get("started_at")),
                         _iso(get("ended_at")), get("fare"), get("discount"), get("capped"), get("charged"),
                         get("entry_record") or "", get("exit_record") or ""))
        yield buffer.getvalue()


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _order(trip: Any) -> tuple[Any, ...]:
    get: Any = trip.get if isinstance(trip, dict) else lambda name: getattr(trip, name)
    return (_utc(get("started_at")), get("entry_record") or "", get("exit_record") or "")


def run_clearing(session: Session, operator_id: str, day: dt.date, *, now: dt.datetime | None = None,
                 ) -> ClearingStatement:
    """Compute the day's trips and statement for the operator, replacing any earlier run."""
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise TransitNotFound("not_found", f"no operator {operator_id!r}")
    rules = rules_of(operator)
    records = session.execute(
        select(*_RECORD_COLUMNS).where(GateRecord.operator_id == operator_id, GateRecord.service_day == day,
                                       GateRecord.accepted.is_(True))
        .order_by(GateRecord.account, GateRecord.at, GateRecord.record_id)
    ).all()
    trips = sorted(compute_trips(rules, records), key=_order)
    digest = hashlib.sha256()
    for line in csv_rows(operator_id, day, trips):
        digest.update(line.encode())
    summary = totals(trips)
    session.execute(delete(Trip).where(Trip.operator_id == operator_id, Trip.service_day == day))
    if trips:
        session.execute(insert(Trip), [{**t, "operator_id": operator_id, "service_day": day} for t in trips])
    statement = session.get(ClearingStatement, (operator_id, day))
    if statement is None:
        statement = ClearingStatement(operator_id=operator_id, service_day=day)
        session.add(statement)
    statement.records = len(records)
    statement.trips = summary["trips"]
    statement.fare_total = summary["fare_total"]
    statement.discount_total = summary["discount_total"]
    statement.capped_total = summary["capped_total"]
    statement.charged_total = summary["charged_total"]
    statement.by_status = summary["by_status"]
    statement.by_card_type = summary["by_card_type"]
    statement.digest = digest.hexdigest()
    statement.computed_at = now or dt.datetime.now(dt.UTC)
    session.flush()
    return statement


def statement_json(statement: ClearingStatement, operator: Operator) -> dict[str, Any]:
    return {
        "operator": operator.id, "operator_name": operator.name, "service_day": statement.service_day.isoformat(),
        "records": statement.records, "trips": statement.trips,
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
