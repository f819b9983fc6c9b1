"""Clearing as set-based SQL inside PostgreSQL: the same trips, fares and statement as the Python path of
:mod:`codeservice.transit.clearing` (which SQLite keeps), computed by the database over a day's records with
window functions, so that memory does not grow with the day.

Pairing, metro: an account's accepted, uncharged-elsewhere taps with a direction ``in`` or ``out``, in the order
(``at``, ``record_id``). Because only an ``in`` opens a trip and the next ``in``/``out`` of the same account
closes it (as an exit, or as an unpaired entry), a tap's fate depends on its neighbours alone:

- an ``in`` whose next tap is an ``out`` at most ``max_minutes`` later is a *paired* trip ending at that ``out``;
- any other ``in`` is an *unpaired entry*;
- an ``out`` whose previous tap is such an ``in`` is that trip's exit (no trip of its own);
- any other ``out`` is an *unpaired exit*.

That is exactly the state machine of :func:`codeservice.transit.clearing.compute_trips`, written with ``lag``
and ``lead`` over ``PARTITION BY account``. Fares come from small tables bound as arrays (``unnest``): the fare
of every station pair of the metro (computed once from the rules' shortest distances), the bus lines' flat
fares, the sites' prices, and the card types' percents. Integer cents throughout; ``fare * percent / 100`` is
integer division of non-negative numbers, the same rounding down as :meth:`FareRules.charge`.

The trips go from the SELECT straight into the ``trips`` table (``INSERT ... SELECT``); the statement's sums are
one ``GROUP BY``; the CSV digest reads the stored trips back in the CSV's order through a server-side cursor,
a chunk at a time (:func:`ordered_trips`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from codeservice.transit.fares import FareRules

#: The Trip columns the INSERT fills, in this order (the same as ``clearing.TRIP_COLUMNS``).
TRIP_COLUMNS = ("status", "account", "card_type", "origin", "destination", "line", "started_at", "ended_at",
                "fare", "discount", "capped", "charged", "entry_record", "exit_record")

#: Rows fetched from the server-side cursor at a time when the trips are read back for the digest.
STREAM_ROWS = 10_000

# The day's charged-once accepted records of the operator.
_RECORDS = """
    SELECT record_id, account, card_type, fare_limit, station, line, direction, at, kind, entitlement
    FROM gate_records
    WHERE operator_id = :operator AND service_day = :day AND accepted AND duplicate_of IS NULL
"""

# Records without an account: a free entry by entitlement at a scenic site, else unbillable. Columns: status,
# account, card_type, origin, destination, line, started_at, ended_at, fare, charge (false: charged nothing),
# fare_limit, entry_record, exit_record.
_NO_ACCOUNT = """
    SELECT CASE WHEN :kind = 'scenic' AND r.kind = 'cert' AND COALESCE(r.entitlement, '') <> ''
                THEN 'entitlement' ELSE 'unbillable' END,
           r.account, r.card_type, r.station, NULL::varchar, r.line, r.at, NULL::timestamptz,
           CASE WHEN :kind = 'scenic' AND r.kind = 'cert' AND COALESCE(r.entitlement, '') <> ''
                THEN COALESCE(s.price, 0) ELSE 0 END,
           false, r.fare_limit, r.record_id, NULL::varchar
    FROM records r LEFT JOIN sites s ON s.site = r.station
    WHERE r.account IS NULL
"""

_METRO = """
    SELECT CASE WHEN t.direction = 'in' THEN
                CASE WHEN t.next_direction = 'out' AND t.next_at - t.at <= make_interval(secs => :max_seconds)
                     THEN 'paired' ELSE 'unpaired_entry' END
                ELSE 'unpaired_exit' END AS status,
           t.account, t.card_type, t.station,
           CASE WHEN t.direction = 'in' AND t.next_direction = 'out'
                     AND t.next_at - t.at <= make_interval(secs => :max_seconds) THEN t.next_station END,
           t.line, t.at,
           CASE WHEN t.direction = 'in' AND t.next_direction = 'out'
                     AND t.next_at - t.at <= make_interval(secs => :max_seconds) THEN t.next_at END,
           CASE WHEN t.direction = 'in' AND t.next_direction = 'out'
                     AND t.next_at - t.at <= make_interval(secs => :max_seconds)
                THEN COALESCE(f.fare, :max_fare) ELSE :max_fare END,
           true, t.fare_limit,
           CASE WHEN t.direction = 'in' THEN t.record_id END,
           CASE WHEN t.direction = 'out' THEN t.record_id
                WHEN t.next_direction = 'out' AND t.next_at - t.at <= make_interval(secs => :max_seconds)
                THEN t.next_record END
    FROM (
        SELECT r.*,
               lag(r.direction) OVER w AS previous_direction, lag(r.at) OVER w AS previous_at,
               lead(r.direction) OVER w AS next_direction, lead(r.at) OVER w AS next_at,
               lead(r.station) OVER w AS next_station, lead(r.record_id) OVER w AS next_record
        FROM records r
        WHERE r.account IS NOT NULL AND r.direction IN ('in', 'out')
        WINDOW w AS (PARTITION BY r.account ORDER BY r.at, r.record_id COLLATE "C")
    ) t
    LEFT JOIN pair_fares f ON f.origin = t.station AND f.destination = t.next_station
    WHERE NOT (t.direction = 'out' AND t.previous_direction IS NOT DISTINCT FROM 'in'
               AND t.at - t.previous_at <= make_interval(secs => :max_seconds))
"""

_BUS = """
    SELECT 'ride', r.account, r.card_type, r.station, NULL::varchar, r.line, r.at, NULL::timestamptz,
           COALESCE(b.fare, :default_fare), true, r.fare_limit, r.record_id, NULL::varchar
    FROM records r LEFT JOIN bus_fares b ON b.line = r.line
    WHERE r.account IS NOT NULL
"""

_SCENIC = """
    SELECT 'entry', r.account, r.card_type, r.station, NULL::varchar, r.line, r.at, NULL::timestamptz,
           COALESCE(s.price, 0), true, NULL::integer, r.record_id, NULL::varchar
    FROM records r LEFT JOIN sites s ON s.site = r.station
    WHERE r.account IS NOT NULL
"""

# The trips with their charges: the card type's percent (100 when not listed; no card type counts as adult),
# then the per-ride limit.
_INSERT = """
    INSERT INTO trips (operator_id, service_day, {columns})
    WITH records AS ({records}),
         pair_fares AS (SELECT * FROM unnest(CAST(:pair_origins AS text[]), CAST(:pair_destinations AS text[]),
                                             CAST(:pair_fares AS integer[])) AS p(origin, destination, fare)),
         bus_fares AS (SELECT * FROM unnest(CAST(:bus_lines AS text[]), CAST(:bus_fares AS integer[]))
                       AS b(line, fare)),
         sites AS (SELECT * FROM unnest(CAST(:sites AS text[]), CAST(:site_prices AS integer[])) AS s(site, price)),
         percents AS (SELECT * FROM unnest(CAST(:cards AS text[]), CAST(:card_percents AS integer[]))
                      AS c(card_type, percent)),
         raw (status, account, card_type, origin, destination, line, started_at, ended_at, fare, charge,
              fare_limit, entry_record, exit_record) AS ({no_account} UNION ALL {by_kind}),
         payable AS (
             SELECT raw.*, CASE WHEN raw.charge THEN raw.fare * COALESCE(c.percent, 100) / 100 ELSE 0 END AS payable
             FROM raw LEFT JOIN percents c ON c.card_type = COALESCE(raw.card_type, 'adult'))
    SELECT :operator, :day, status, account, card_type, origin, destination, line, started_at, ended_at, fare,
           CASE WHEN charge THEN fare - payable ELSE fare END,
           CASE WHEN charge AND fare_limit IS NOT NULL THEN payable - LEAST(payable, fare_limit) ELSE 0 END,
           CASE WHEN charge AND fare_limit IS NOT NULL THEN LEAST(payable, fare_limit) ELSE payable END,
           entry_record, exit_record
    FROM payable
"""


def _parameters(rules: FareRules) -> dict[str, Any]:
    """The fare tables of *rules* as arrays to bind."""
    pairs: list[tuple[str, str, int]] = []
    if rules.kind == "metro":
        assert rules.distances is not None
        pairs = [(a, b, fare) for (a, b) in sorted(rules.distances)
                 if (fare := rules.metro_fare(a, b)) is not None]
    bus = sorted(rules.raw["lines"].items()) if rules.kind == "bus" else []
    sites = sorted((site, int(value["price"])) for site, value in rules.raw.get("sites", {}).items()) \
        if rules.kind == "scenic" else []
    cards = sorted(rules.discounts.items())
    return {
        "kind": rules.kind,
        "pair_origins": [p[0] for p in pairs], "pair_destinations": [p[1] for p in pairs],
        "pair_fares": [p[2] for p in pairs],
        "bus_lines": [line for line, _ in bus], "bus_fares": [int(fare) for _, fare in bus],
        "default_fare": int(rules.raw["default"]) if rules.kind == "bus" else 0,
        "sites": [site for site, _ in sites], "site_prices": [price for _, price in sites],
        "cards": [card for card, _ in cards], "card_percents": [int(percent) for _, percent in cards],
        "max_fare": rules.max_fare if rules.kind == "metro" else 0,
        "max_seconds": rules.max_trip_seconds if rules.kind == "metro" else 0,
    }


def insert_trips(session: Session, operator_id: str, day: dt.date, rules: FareRules) -> None:
    """Compute the operator's trips of *day* inside PostgreSQL and store them (the day's earlier trips must be
    deleted first)."""
    by_kind = {"metro": _METRO, "bus": _BUS, "scenic": _SCENIC}[rules.kind]
    statement = _INSERT.format(columns=", ".join(TRIP_COLUMNS), records=_RECORDS, no_account=_NO_ACCOUNT,
                               by_kind=by_kind)
    session.execute(text("SET LOCAL work_mem = '64MB'"))
    session.execute(text(statement), {"operator": operator_id, "day": day, **_parameters(rules)})


def record_counts(session: Session, operator_id: str, day: dt.date) -> tuple[int, int]:
    """(records charged here, duplicates charged under another record) of the operator's accepted records."""
    row = session.execute(text(
        "SELECT count(*) FILTER (WHERE duplicate_of IS NULL), count(*) FILTER (WHERE duplicate_of IS NOT NULL) "
        "FROM gate_records WHERE operator_id = :operator AND service_day = :day AND accepted"),
        {"operator": operator_id, "day": day}).one()
    return int(row[0]), int(row[1])


def trip_totals(session: Session, operator_id: str, day: dt.date) -> dict[str, Any]:
    """The statement's sums of the stored trips (the shape of ``clearing.totals``), by one GROUP BY."""
    rows = session.execute(text(
        "SELECT status, card_type, count(*), sum(fare), sum(discount), sum(capped), sum(charged) FROM trips "
        "WHERE operator_id = :operator AND service_day = :day GROUP BY status, card_type"),
        {"operator": operator_id, "day": day}).all()
    by_status: dict[str, int] = {}
    by_card: dict[str, dict[str, int]] = {}
    count = fare = discount = capped = charged = 0
    for status, card_type, n, s_fare, s_discount, s_capped, s_charged in rows:
        count += int(n)
        fare += int(s_fare)
        discount += int(s_discount)
        capped += int(s_capped)
        charged += int(s_charged)
        by_status[status] = by_status.get(status, 0) + int(n)
        card = by_card.setdefault(card_type or "none", {"trips": 0, "charged": 0})
        card["trips"] += int(n)
        card["charged"] += int(s_charged)
    return {"trips": count, "fare_total": fare, "discount_total": discount, "capped_total": capped,
            "charged_total": charged, "by_status": dict(sorted(by_status.items())),
            "by_card_type": dict(sorted(by_card.items()))}


def ordered_trips(session: Session, operator_id: str, day: dt.date) -> Iterator[tuple[Any, ...]]:
    """The stored trips of the day as tuples of ``TRIP_COLUMNS`` in the CSV's order (start time, then entry and
    exit record ids compared as code points, as Python compares them), streamed a chunk at a time."""
    result = session.execute(
        text("SELECT status, account, card_type, origin, destination, line, started_at, ended_at, fare, discount, "
             "capped, charged, entry_record, exit_record "
             "FROM trips WHERE operator_id = :operator AND service_day = :day "
             "ORDER BY started_at, COALESCE(entry_record, '') COLLATE \"C\", "
             "COALESCE(exit_record, '') COLLATE \"C\""),
        {"operator": operator_id, "day": day},
        execution_options={"yield_per": STREAM_ROWS})
    for row in result:
        yield tuple(row)
