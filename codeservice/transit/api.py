"""Transit over HTTP: the resident's phone, the operators' gates, and the operators' records and clearing.

Resident (session cookie, as ``/api/v1/me/code``):

- ``GET /api/v1/me/ride``: the transit account, its devices, and the ride-code timing.
- ``POST /api/v1/me/ride/challenge``: a fresh challenge the phone signs with its device key.
- ``POST /api/v1/me/ride/devices`` ``{public_key, proof[, label]}``: register the key, get a ride credential.
- ``POST /api/v1/me/ride/devices/<id>/credential`` ``{proof}``: renew the credential (the phone is online).
- ``DELETE /api/v1/me/ride/devices/<id>``: remove a phone (its codes are refused once gates refresh).
- ``GET /api/v1/me/trips``: the resident's charged trips, newest first.

Gates (``device`` key of an operator): ``GET /api/v1/gate/setup`` (fares and capacity at a station or line),
``POST /api/v1/gate/records`` (upload; each record stored exactly once, each code charged once).

Operators (``operator`` key of that operator, or ``admin``): the operator's rules, its ride and entry records,
clearing statements (JSON), their trips (CSV); ``admin`` adds operators.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from flask import Blueprint, Response, g, jsonify, session
from sqlalchemy import func, select

from codeservice.clients.auth import require_client
from codeservice.identity.session import signed_in_resident
from codeservice.jsonapi import UNPROCESSABLE, BadRequest, json_object, no_store, query_arg
from codeservice.services import Services, current_services
from codeservice.transit.clearing import csv_rows, day_is_over, parse_day, run_clearing, statement_json, trips_of_day
from codeservice.transit.models import ClearingStatement, GateRecord, Operator, TransitAccount, Trip
from codeservice.transit.service import (
    OPERATOR_ID,
    TransitError,
    TransitNotFound,
    account_json,
    add_operator,
    check_proof,
    device_of,
    devices_json,
    ensure_account,
    ingest_records,
    new_challenge,
    operator_json,
    parse_device_key,
    register_device,
    renew_credential,
    revoke_device,
    rules_of,
)
from sdk.citytime import city_today
from sdk.keys import b64u_decode, b64u_encode

transit_api = Blueprint("transit_api", __name__, url_prefix="/api/v1")

CHALLENGE_SECONDS = 300


#: HTTP status of each transit refusal; any other is a 422 (the document refused a malformed request before).
_STATUS = {"frozen": 403, "forbidden": 403, "too_many_devices": 409, "key_in_use": 409, "device_revoked": 409,
           "exists": 409, "busy": 503, "status_list_full": 503}


def _refuse(exc: TransitError) -> BadRequest:
    """A refusal of codeservice/transit.py as the API answers it (the reasons are listed in the OpenAPI)."""
    status = 404 if isinstance(exc, TransitNotFound) else _STATUS.get(exc.reason, UNPROCESSABLE)
    return BadRequest(exc.reason, str(exc), status)


# -- the resident's phone -----------------------------------------------------------------------------
def _ride_timing(services: Services) -> dict[str, int]:
    s = services.settings
    return {"code_validity": s.ride_code_validity, "refresh_seconds": s.ride_refresh,
            "credential_hours": s.ride_credential_hours}


@transit_api.get("/me/ride")
def my_ride() -> Response:
    services = current_services()
    with services.db.session() as db:
        pid = signed_in_resident(db)
        account = ensure_account(db, pid, fare_limit=services.settings.ride_fare_limit, today=city_today())
        body = {**account_json(account), "devices": devices_json(db, account), **_ride_timing(services)}
    return no_store(jsonify(body))


@transit_api.post("/me/ride/challenge")
def ride_challenge() -> tuple[Response, int]:
    services = current_services()
    with services.db.session() as db:
        signed_in_resident(db)
    challenge = new_challenge()
    expires = int(time.time()) + CHALLENGE_SECONDS
    session["ride_challenge"] = [b64u_encode(challenge), expires]
    return no_store(jsonify(challenge=b64u_encode(challenge), expires_at=expires)), 201


def _take_challenge() -> bytes:
    """The session's challenge, used once: a proof is good for one registration or renewal."""
    held = session.pop("ride_challenge", None)
    if not isinstance(held, list) or len(held) != 2 or not isinstance(held[1], int) or held[1] < time.time():
        raise BadRequest("no_challenge", "ask for a challenge first (POST /api/v1/me/ride/challenge); "
                         "it is good for five minutes and one use", UNPROCESSABLE)
    return b64u_decode(held[0])


@transit_api.post("/me/ride/devices")
def register() -> tuple[Response, int]:
    services = current_services()
    s = services.settings
    with services.db.session() as db:
        pid = signed_in_resident(db)  # the session first, then the body, as every resident endpoint
        body = json_object()  # DeviceRegistration
        label = body.get("label", "phone")
        try:
            key = parse_device_key(body["public_key"])
            check_proof(key, _take_challenge(), body["proof"])
            credential = register_device(
                db, services.keyring, pid, key, label=label.strip() or "phone", fare_limit=s.ride_fare_limit,
                lifetime=s.ride_credential_hours * 3600, validity=s.ride_code_validity,
                status_list_size=s.status_list_size, now=time.time(),
            )
        except TransitError as exc:
            raise _refuse(exc) from None
    return no_store(jsonify(credential.to_json(s.ride_refresh))), 201


@transit_api.post("/me/ride/devices/<device_id>/credential")
def renew(device_id: str) -> Response:
    services = current_services()
    s = services.settings
    with services.db.session() as db:
        pid = signed_in_resident(db)
        body = json_object()  # CredentialRenewal
        try:
            _account, device = device_of(db, pid, device_id)
            key = parse_device_key(device.public_key)
            check_proof(key, _take_challenge(), body["proof"])
            credential = renew_credential(db, services.keyring, pid, device_id,
                                          lifetime=s.ride_credential_hours * 3600, validity=s.ride_code_validity,
                                          now=time.time())
        except TransitError as exc:
            raise _refuse(exc) from None
    return no_store(jsonify(credential.to_json(s.ride_refresh)))


@transit_api.delete("/me/ride/devices/<device_id>")
def remove_device(device_id: str) -> Response:
    services = current_services()
    with services.db.session() as db:
        pid = signed_in_resident(db)
        try:
            device = revoke_device(db, pid, device_id)
        except TransitError as exc:
            raise _refuse(exc) from None
        body = {"id": device.id, "status": device.status}
    return no_store(jsonify(body))


def _trip_json(trip: Trip, operators: dict[str, str]) -> dict[str, Any]:
    return {
        "operator": trip.operator_id, "operator_name": operators.get(trip.operator_id, trip.operator_id),
        "service_day": trip.service_day.isoformat(), "status": trip.status, "origin": trip.origin,
        "destination": trip.destination, "line": trip.line, "started_at": _iso(trip.started_at),
        "ended_at": _iso(trip.ended_at), "fare": trip.fare, "discount": trip.discount, "capped": trip.capped,
        "charged": trip.charged,
    }


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


@transit_api.get("/me/trips")
def my_trips() -> Response:
    services = current_services()
    with services.db.session() as db:
        pid = signed_in_resident(db)
        account = db.scalars(select(TransitAccount).where(TransitAccount.resident == pid)).one_or_none()
        trips = [] if account is None else db.scalars(
            select(Trip).where(Trip.account == account.account).order_by(Trip.started_at.desc()).limit(200)).all()
        operators = dict(db.execute(select(Operator.id, Operator.name)).all())
        total = 0 if account is None else db.scalar(
            select(func.coalesce(func.sum(Trip.charged), 0)).where(Trip.account == account.account))
        body = {"account": account.account if account else None,
                "trips": [_trip_json(t, operators) for t in trips],
                "charged_total": int(total or 0)}
    return no_store(jsonify(body))


# -- gates ------------------------------------------------------------------------------------------------
def _gate_operator(db: Any) -> Operator:
    operator = db.get(Operator, g.client.operator_id) if g.client.operator_id else None
    if operator is None:
        raise BadRequest("forbidden", "this device is not a gate of an operator (it belongs to an office)", 403)
    return operator  # type: ignore[no-any-return]


@transit_api.get("/gate/setup")
@require_client("device")
def gate_setup() -> Response:
    """What a gate at a station, line or site needs besides the trust and status lists: its fares by card
    type where the fare is known at the scan, and the site's daily capacity."""
    station, line = query_arg("station"), query_arg("line")
    with current_services().db.session() as db:
        operator = _gate_operator(db)
        rules = rules_of(operator)
        if (operator.kind in ("metro", "scenic") and station is None) or (operator.kind == "bus" and line is None):
            raise BadRequest("invalid_query", f"a {operator.kind} gate gives its "
                             f"{'line' if operator.kind == 'bus' else 'station'}", UNPROCESSABLE)
        if operator.kind == "metro" and station not in rules.stations():
            raise BadRequest("unknown_station", f"no station {station!r} on {operator.id}", 404)
        if operator.kind == "scenic" and rules.entry_price(station) is None:
            raise BadRequest("unknown_site", f"no site {station!r} at {operator.id}", 404)
        body = {"operator": operator.id, "kind": operator.kind, "station": station, "line": line,
                "fares": rules.fare_for_gate(station=station, line=line),
                "daily_capacity": rules.capacity(station) if operator.kind == "scenic" and station else None}
    return jsonify(body)


@transit_api.post("/gate/records")
@require_client("device")
def upload_records() -> Response:
    body = json_object()  # GateUpload, of at most x-max-body-bytes (1 MiB, read by contract.py); a bad record is
    # answered in 'rejected', not refused
    services = current_services()
    if not g.client.operator_id:  # as _gate_operator, without reading the operator: the key's foreign key holds it
        raise BadRequest("forbidden", "this device is not a gate of an operator (it belongs to an office)", 403)
    with services.db.session() as db:
        try:
            result = ingest_records(db, g.client, body["records"], time.time(), services.evidence_verifier())
        except TransitError as exc:
            raise _refuse(exc) from None
    return jsonify(result.to_json())


# -- operators --------------------------------------------------------------------------------------------
def _own_operator(db: Any, operator_id: str) -> Operator:
    """The operator in the path: an ``operator`` key reaches only its own; ``admin`` any."""
    if g.client.role == "operator" and g.client.operator_id != operator_id:
        raise BadRequest("forbidden", "an operator key reaches only its own operator", 403)
    operator = db.get(Operator, operator_id) if OPERATOR_ID.fullmatch(operator_id) else None
    if operator is None:
        raise BadRequest("not_found", f"no operator {operator_id!r}", 404)
    return operator  # type: ignore[no-any-return]


def _day(text: str) -> dt.date:
    """The document's ServiceDay (YYYY-MM-DD, a date: 400 ``invalid_day`` otherwise), as a date."""
    day = parse_day(text)
    assert day is not None, text
    return day


@transit_api.post("/admin/operators")
@require_client("admin")
def create_operator() -> tuple[Response, int]:
    body = json_object()  # OperatorRequest
    with current_services().db.session() as db:
        try:
            operator = add_operator(db, body["id"], body["name"], body["kind"], body["fares"],
                                    body.get("discounts", {}))
        except TransitError as exc:
            raise _refuse(exc) from None
        out = operator_json(operator)
    response = jsonify(out)
    response.headers["Location"] = f"/api/v1/operators/{out['id']}"
    return response, 201


@transit_api.get("/operators/<operator_id>")
@require_client("operator", "admin")
def get_operator(operator_id: str) -> Response:
    with current_services().db.session() as db:
        return jsonify(operator_json(_own_operator(db, operator_id)))


@transit_api.get("/operators/<operator_id>/records")
@require_client("operator", "admin")
def operator_records(operator_id: str) -> Response:
    """The operator's ride and entry records of a day, in pages (``after`` the last record id seen); a record
    whose code was charged under another record is listed too, as a ``duplicate``."""
    day = _day(query_arg("day"))
    after, limit = query_arg("after"), query_arg("limit")
    with current_services().db.session() as db:
        _own_operator(db, operator_id)
        rows = db.scalars(select(GateRecord).where(
            GateRecord.operator_id == operator_id, GateRecord.service_day == day, GateRecord.record_id > after)
            .order_by(GateRecord.record_id).limit(limit)).all()
        # a copy of a code charged under another record: that record is named when it is this operator's own
        originals = {r.duplicate_of for r in rows if r.duplicate_of is not None}
        own = set(db.scalars(select(GateRecord.record_id).where(
            GateRecord.record_id.in_(originals), GateRecord.operator_id == operator_id))) if originals else set()
        records = [{
            "record_id": r.record_id, "gate_id": r.gate_id, "scene": r.scene, "station": r.station, "line": r.line,
            "direction": r.direction, "at": _iso(r.at), "accepted": r.accepted, "reason": r.reason, "kind": r.kind,
            "account": r.account, "card_type": r.card_type, "entitlement": r.entitlement, "online": r.online,
            "duplicate": r.duplicate_of is not None, "duplicate_of": r.duplicate_of if r.duplicate_of in own else None,
        } for r in rows]
    return no_store(jsonify(records=records, next=records[-1]["record_id"] if len(records) == limit else None))


@transit_api.post("/operators/<operator_id>/clearing/<day>")
@require_client("operator", "admin")
def clear_day(operator_id: str, day: str) -> Response:
    moment = _day(day)
    if not day_is_over(moment):
        raise BadRequest("day_not_over", "clear a day once it is over (operating days end at 04:00 city time)",
                         409)
    with current_services().db.session() as db:
        operator = _own_operator(db, operator_id)
        statement = run_clearing(db, operator_id, moment)
        return no_store(jsonify(statement_json(statement, operator)))


def _statement(db: Any, operator_id: str, day: str) -> tuple[Operator, ClearingStatement]:
    """The operator (as ``_own_operator``) and its statement of the day, 404 ``not_cleared`` when there is none."""
    operator = _own_operator(db, operator_id)
    statement = db.get(ClearingStatement, (operator_id, _day(day)))
    if statement is None:
        raise BadRequest("not_cleared", f"{operator_id} has no statement for {day}; run clearing first", 404)
    return operator, statement


@transit_api.get("/operators/<operator_id>/clearing/<day>")
@require_client("operator", "admin")
def get_statement(operator_id: str, day: str) -> Response:
    with current_services().db.session() as db:
        operator, statement = _statement(db, operator_id, day)
        return no_store(jsonify(statement_json(statement, operator)))


@transit_api.get("/operators/<operator_id>/clearing/<day>/trips.csv")
@require_client("operator", "admin")
def statement_csv(operator_id: str, day: str) -> Response:
    moment = _day(day)
    with current_services().db.session() as db:
        _statement(db, operator_id, day)
        text = "".join(csv_rows(operator_id, moment, trips_of_day(db, operator_id, moment)))
    response = Response(text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{operator_id}-{moment.isoformat()}-trips.csv"'
    return no_store(response)
