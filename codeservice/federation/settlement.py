"""Settlement between cities (城际清算): what each city's residents rode on the other's operators, a day at a time.

1. **Host.** After its daily clearing, the city whose operators carried visitors finds, among its cleared trips,
   those whose ride code was signed by a federated city's transit platform (the code a gate recorded, checked
   again by the service's evidence verifier, which names the code's home city) and keeps them in
   ``intercity_trips`` (host = this city). :func:`visits_token` writes those of one home city as a JWS signed
   by this city's transit platform key (``typ: visits+jwt``), with the ride codes the gates recorded.
2. **Home.** The home city imports that file (:func:`import_visits`): it verifies the signature with the host's
   transit key from the host's trust list (fetched and verified with the anchor its own table vouches for),
   then each trip's ride codes with its own keys: a code its own transit platform signed, for the account the
   trip names, made at the trip's time. A trip that is not proven is refused and reported, never settled.
3. **Statement.** Each city then holds both halves of the day: its residents on the other's operators, and the
   other's residents on its own. :func:`statement` writes them as one CSV in one order (host city, operator,
   start, trip key), in integer cents, with its SHA-256 and the net amount due: the same bytes on both sides.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import time
from collections.abc import Iterable
from typing import Any

import jwt
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from codeservice.errors import NotFound, Refused
from codeservice.federation.models import FederatedCity, IntercityTrip
from codeservice.transit.models import ClearingStatement, GateRecord, TransitAccount, Trip
from sdk.keys import b64u_decode, b64u_encode
from sdk.verifier import Verifier

VISITS_TYPE = "visits+jwt"
TRANSIT_ISSUER = "city-transit"
VISITS_VALIDITY = 7 * 86400
CSV_COLUMNS = ("service_day", "host_city", "home_city", "operator", "status", "account", "card_type", "origin",
               "destination", "line", "started_at", "ended_at", "fare_cents", "charged_cents", "trip_key")
_TRIP_FIELDS = ("trip_key", "operator_id", "status", "account", "card_type", "origin", "destination", "line",
                "started_at", "ended_at", "fare_cents", "charged_cents", "evidence")


def _epoch(moment: dt.datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def record_hosted(session: Session, evidence: Verifier, *, own_city: str, day: dt.date, required: bool = True,
                  ) -> int:
    """Find the visitors' trips among this city's cleared trips of *day* and keep them (replacing an earlier
    run); how many. When no operator's clearing of the day has been run: Refused, or (not *required*) 0, and
    what was kept stays."""
    if session.scalar(select(ClearingStatement.operator_id).where(ClearingStatement.service_day == day)
                      .limit(1)) is None:
        if not required:
            return 0
        raise Refused(f"{day} is not cleared yet: run 'citycode clearing run --date {day}' first")
    own_accounts = select(TransitAccount.account)
    trips = session.scalars(select(Trip).where(Trip.service_day == day, Trip.account.is_not(None),
                                               Trip.account.not_in(own_accounts))).all()
    session.execute(delete(IntercityTrip).where(IntercityTrip.host_city == own_city,
                                                IntercityTrip.service_day == day))
    kept = 0
    for trip in trips:
        ids = [r for r in (trip.entry_record, trip.exit_record) if r is not None]
        records = {r.record_id: r for r in session.scalars(select(GateRecord).where(GateRecord.record_id.in_(ids)))}
        codes = [records[r].evidence for r in ids if r in records and records[r].evidence]
        if not codes:
            continue
        first = records[ids[0]]
        result = evidence.evidence(codes[0], at=first.at.timestamp())
        if not result.accepted or result.home_city is None or result.kind != "ride":
            continue
        session.add(IntercityTrip(
            host_city=own_city, trip_key=ids[0], home_city=result.home_city, service_day=day,
            operator_id=trip.operator_id, status=trip.status, account=trip.account or "", card_type=trip.card_type,
            origin=trip.origin, destination=trip.destination, line=trip.line, started_at=_epoch(trip.started_at),
            ended_at=_epoch(trip.ended_at), fare_cents=trip.fare, charged_cents=trip.charged,
            evidence=[c for c in codes if c is not None]))
        kept += 1
    session.flush()
    return kept


def _trip_json(trip: IntercityTrip) -> dict[str, Any]:
    return {name: getattr(trip, name) for name in _TRIP_FIELDS}


def visits_token(session: Session, keyring: Any, *, own_city: str, home_city: str, day: dt.date,
                 now: float | None = None) -> str:
    """This city's visits file for *home_city*: its residents' trips here on *day*, signed by the transit platform."""
    if session.get(FederatedCity, home_city) is None:
        raise NotFound(f"no federated city {home_city!r}")
    trips = session.scalars(select(IntercityTrip).where(
        IntercityTrip.host_city == own_city, IntercityTrip.home_city == home_city,
        IntercityTrip.service_day == day).order_by(IntercityTrip.trip_key)).all()
    issued = int(time.time() if now is None else now)
    signer = keyring.signer(TRANSIT_ISSUER)
    claims = {"iss": own_city, "aud": home_city, "day": day.isoformat(), "iat": issued,
              "exp": issued + VISITS_VALIDITY, "trips": [_trip_json(t) for t in trips]}
    return jwt.encode(claims, signer.private_key, algorithm="ES256",
                      headers={"typ": VISITS_TYPE, "kid": b64u_encode(signer.kid)})


def import_visits(session: Session, token: str, *, own_city: str, lists: Any, evidence: Verifier,
                  now: float | None = None) -> dict[str, Any]:
    """Verify a host city's visits file and keep the trips it proves; what was imported and what refused.

    *lists* is the service's hold of its federation (``CityLists``): the host's trust list comes from there."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Refused(f"not a visits file: {exc}") from None
    if header.get("typ") != VISITS_TYPE or set(header) - {"typ", "alg", "kid"}:
        raise Refused(f"not a visits file (type {header.get('typ')!r})")
    host = unverified.get("iss")
    if not isinstance(host, str) or session.get(FederatedCity, host) is None:
        raise Refused(f"the visits file is from {host!r}, a city this city does not know")
    lists.refresh(force=lists.federation.trust_list(host) is None)
    trust = lists.federation.trust_list(host)
    if trust is None:
        raise Refused(f"the trust list of {host} cannot be had: its service is unreachable or its list refused")
    try:
        key = trust.get(b64u_decode(str(header.get("kid", ""))))
    except ValueError:
        key = None
    if key is None or key.issuer != TRANSIT_ISSUER:
        raise Refused(f"the visits file is not signed by the transit platform of {host}")
    try:
        claims = jwt.decode(token, key.public_key, algorithms=[key.alg_name], audience=own_city,
                            options={"require": ["iss", "aud", "iat", "exp", "day", "trips"]},
                            leeway=60)
    except jwt.PyJWTError as exc:
        raise Refused(f"the visits file does not verify: {exc}") from None
    try:
        day = dt.date.fromisoformat(claims["day"])
    except (TypeError, ValueError):
        raise Refused("the visits file's day is not a date") from None
    trips = claims["trips"]
    if not isinstance(trips, list):
        raise Refused("the visits file holds no trip list")
    imported, refused = [], []
    rows = []
    for item in trips:
        problem = _unproven(item, evidence, day)
        if problem is not None:
            refused.append({"trip_key": str(item.get("trip_key"))[:32] if isinstance(item, dict) else None,
                            "error": problem})
            continue
        rows.append(IntercityTrip(host_city=host, home_city=own_city, service_day=day,
                                  **{name: item[name] for name in _TRIP_FIELDS}))
        imported.append(item["trip_key"])
    session.execute(delete(IntercityTrip).where(IntercityTrip.host_city == host, IntercityTrip.home_city == own_city,
                                                IntercityTrip.service_day == day))
    session.add_all(rows)
    session.flush()
    return {"host_city": host, "service_day": day.isoformat(), "imported": len(imported), "refused": refused}


def _unproven(item: Any, evidence: Verifier, day: dt.date) -> str | None:
    """Why a trip of a visits file is not proven by its ride codes (checked with this city's own keys)."""
    if not isinstance(item, dict) or set(item) != set(_TRIP_FIELDS):
        return f"a trip has exactly the members {', '.join(_TRIP_FIELDS)}"
    ints = ("started_at", "fare_cents", "charged_cents")
    if any(type(item[n]) is not int or item[n] < 0 for n in ints) or not (
            item["ended_at"] is None or type(item["ended_at"]) is int):
        return "times and amounts are whole numbers"
    texts = ("trip_key", "operator_id", "status", "account")
    if any(not isinstance(item[n], str) or not 0 < len(item[n]) <= 64 for n in texts):
        return "trip_key, operator_id, status and account are text"
    if any(item[n] is not None and (not isinstance(item[n], str) or len(item[n]) > 64)
           for n in ("card_type", "origin", "destination", "line")):
        return "card_type, origin, destination and line are text or null"
    codes = item["evidence"]
    if not isinstance(codes, list) or not 1 <= len(codes) <= 2 or not all(isinstance(c, str) for c in codes):
        return "evidence: the one or two ride codes of the trip"
    for index, code in enumerate(codes):
        at = item["started_at"] if index == 0 else (item["ended_at"] or item["started_at"])
        result = evidence.evidence(code, at=at)
        if not result.accepted:
            return f"ride code {index + 1} does not verify here ({result.reason.value})"
        if result.home_city is not None or result.kind != "ride" or result.subject != item["account"]:
            return f"ride code {index + 1} is not of this city's account {item['account']}"
        if result.card_type != item["card_type"]:
            return f"ride code {index + 1} names another card type"
    return None


def _csv(rows: Iterable[IntercityTrip]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in rows:
        writer.writerow((t.service_day.isoformat(), t.host_city, t.home_city, t.operator_id, t.status, t.account,
                         t.card_type or "", t.origin or "", t.destination or "", t.line or "", t.started_at,
                         "" if t.ended_at is None else t.ended_at, t.fare_cents, t.charged_cents, t.trip_key))
    return buffer.getvalue()


def statement(session: Session, *, own_city: str, other_city: str, day: dt.date) -> dict[str, Any]:
    """The inter-city statement of *day* between this city and *other_city*, as both compute it."""
    if session.get(FederatedCity, other_city) is None:
        raise NotFound(f"no federated city {other_city!r}")
    pair = {own_city, other_city}
    rows = [t for t in session.scalars(select(IntercityTrip).where(IntercityTrip.service_day == day))
            if {t.host_city, t.home_city} == pair]
    rows.sort(key=lambda t: (t.host_city, t.operator_id, t.started_at, t.trip_key))
    text = _csv(rows)
    directions: dict[str, dict[str, Any]] = {}
    for home, host in ((own_city, other_city), (other_city, own_city)):
        mine = [t for t in rows if t.home_city == home and t.host_city == host]
        by_operator: dict[str, dict[str, int]] = {}
        for t in mine:
            line = by_operator.setdefault(t.operator_id, {"trips": 0, "charged_cents": 0})
            line["trips"] += 1
            line["charged_cents"] += t.charged_cents
        directions[f"{home}_residents_on_{host}"] = {
            "home_city": home, "host_city": host, "trips": len(mine),
            "fare_cents": sum(t.fare_cents for t in mine), "charged_cents": sum(t.charged_cents for t in mine),
            "by_operator": dict(sorted(by_operator.items()))}
    owed_out = directions[f"{own_city}_residents_on_{other_city}"]["charged_cents"]
    owed_in = directions[f"{other_city}_residents_on_{own_city}"]["charged_cents"]
    balance = owed_out - owed_in  # above 0: this city pays the other
    payer = own_city if balance > 0 else other_city if balance < 0 else None
    return {"service_day": day.isoformat(), "cities": sorted(pair), "directions": directions,
            "net": {"payer": payer, "payee": None if payer is None else (pair - {payer}).pop(),
                    "cents": abs(balance)},
            "currency": "CNY", "amounts_in": "cents", "trips": len(rows), "csv": text,
            "digest": hashlib.sha256(text.encode()).hexdigest()}
