"""Venues over HTTP (docs/venues.md).

Resident (session cookie): ``POST /api/v1/me/checkins/preview`` ``{code}`` (what a check-in would record),
``POST /api/v1/me/checkins`` ``{code, consent: true}`` (record it), ``GET /api/v1/me/checkins`` (their own).

Administrators (admin key): ``POST /api/v1/admin/venues``, ``POST /api/v1/admin/venues/<id>/code``,
``POST /api/v1/admin/venues/<id>/revoke``.

The venue (its own key, ``venueKey``): ``GET /api/v1/venues/<id>/counts?date=YYYY-MM-DD``, counts per hour, never who.

The data office (auditor key): ``POST /api/v1/venues/<id>/named-requests`` ``{date, reason}``, recorded in the
access log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from codeservice.clients.auth import require_client
from codeservice.contract import check_request
from codeservice.identity.session import signed_in_resident
from codeservice.jsonapi import UNPROCESSABLE, BadRequest, json_object, no_store, query_arg
from codeservice.services import Services, current_services
from codeservice.state import StateError, StateReplayGuard
from codeservice.venues.models import ServicePoint, Venue
from codeservice.venues.points import (
    PointError,
    PointNotFound,
    add_point,
    add_service,
    ingest_records,
    overdraws,
    point_by_key,
    point_json,
    service_json,
    use_online,
)
from codeservice.venues.service import (
    CodeRefused,
    VenueError,
    VenueNotFound,
    add_venue,
    check_venue_code,
    checkin_json,
    checkins_of,
    counts_per_hour,
    get_venue,
    named_request,
    purge_checkins,
    record_checkin,
    revoke_venue,
    venue_by_key,
    venue_code,
    venue_json,
)
from sdk.verifier import Verifier

venues_api = Blueprint("venues_api", __name__, url_prefix="/api/v1")

_STATUS = {"exists": 409, "venue_revoked": 409}


def _refuse(exc: VenueError | PointError) -> BadRequest:
    """A refusal of the venues' or the service points' rules as the API answers it."""
    status = 404 if isinstance(exc, (VenueNotFound, PointNotFound)) else _STATUS.get(exc.reason, UNPROCESSABLE)
    return BadRequest(exc.reason, str(exc), status)


def _code_refused(exc: CodeRefused) -> Response:
    """A scanned venue code that did not pass: 422 ``code_refused`` with its stable ``reason`` (``revoked``,
    ``expired``, ``bad_signature``, ``unknown_venue``, ...): what the phone shows, translated."""
    response = jsonify(error="code_refused", reason=exc.reason,
                       message=f"venue code refused: {exc.reason}" + (f" ({exc.detail})" if exc.detail else ""))
    response.status_code = UNPROCESSABLE
    return no_store(response)


def recorded_fields(services: Services) -> dict[str, Any]:
    """What a check-in records and keeps, shown to the resident before they confirm."""
    return {"recorded": ["venue", "time", "resident"],
            "retention_days": services.settings.checkin_retention_days}


def _checked_venue(services: Services, db: Any, code: Any) -> Venue:
    s = services.settings
    return check_venue_code(db, services.keyring, code, leeway=s.leeway, trust_validity=s.trust_validity)


# -- the resident -----------------------------------------------------------------------------------------------
@venues_api.post("/me/checkins/preview")
def preview_checkin() -> Response:
    services = current_services()
    with services.db.session() as db:
        signed_in_resident(db)
        try:
            venue = _checked_venue(services, db, json_object().get("code"))
        except CodeRefused as exc:
            return _code_refused(exc)
        body = {"venue": venue_json(venue), **recorded_fields(services)}
    return no_store(jsonify(body))


@venues_api.post("/me/checkins")
def check_in() -> Response:
    services = current_services()
    with services.db.session() as db:
        pid = signed_in_resident(db)
        body = json_object()
        if body.get("consent") is not True:
            raise BadRequest("consent_required", "a check-in is recorded only when the resident consents", 422)
        try:
            venue = _checked_venue(services, db, body.get("code"))
        except CodeRefused as exc:
            return _code_refused(exc)
        purge_checkins(db)  # the service deletes what is past retention as it goes, as well as 'venue purge'
        checkin = record_checkin(db, venue, pid, retention_days=services.settings.checkin_retention_days)
        answer = checkin_json(checkin, venue.name)
    response = jsonify(answer)
    response.status_code = 201
    return no_store(response)


@venues_api.get("/me/checkins")
def my_checkins() -> Response:
    services = current_services()
    with services.db.session() as db:
        pid = signed_in_resident(db)
        rows = [checkin_json(c, name) for c, name in checkins_of(db, pid)]
    return no_store(jsonify({"checkins": rows,
                             "retention_days": services.settings.checkin_retention_days}))


# -- administrators ---------------------------------------------------------------------------------------------
@venues_api.post("/admin/venues")
@require_client("admin")
def create_venue() -> Response:
    body = json_object()
    with current_services().db.session() as db:
        try:
            venue, key = add_venue(db, body.get("id"), body.get("name"))  # type: ignore[arg-type]
        except VenueError as exc:
            raise _refuse(exc) from None
        answer = {**venue_json(venue), "key": key}
    response = jsonify(answer)
    response.status_code = 201
    return no_store(response)


@venues_api.post("/admin/venues/<venue_id>/code")
@require_client("admin")
def make_venue_code(venue_id: str) -> Response:
    services = current_services()
    days = json_object().get("days", 365)
    with services.db.session() as db:
        try:
            code = venue_code(services.keyring, get_venue(db, venue_id), days=days)
        except VenueError as exc:
            raise _refuse(exc) from None
    return no_store(jsonify({"venue": venue_id, "code": code, "days": days}))


@venues_api.post("/admin/venues/<venue_id>/revoke")
@require_client("admin")
def revoke(venue_id: str) -> Response:
    with current_services().db.session() as db:
        try:
            answer = venue_json(revoke_venue(db, venue_id))
        except VenueError as exc:
            raise _refuse(exc) from None
    return jsonify(answer)


# -- the venue and the data office ----------------------------------------------------------------------------
def _day(text: Any) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except (TypeError, ValueError):
        raise BadRequest("invalid_day", "the date is YYYY-MM-DD", 400) from None


def _venue_key_deny(status: int, message: str) -> Response:
    response = jsonify(error="unauthorised" if status == 401 else "forbidden", message=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="citycode"'
    return response


@venues_api.get("/venues/<venue_id>/counts")
def venue_counts(venue_id: str) -> Response:
    """Counts per hour for the venue's own key only (another venue's key is 403)."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return _venue_key_deny(401, "send Authorization: Bearer <venue key>")
    with current_services().db.session() as db:
        venue = venue_by_key(db, key.strip())
        if venue is None:
            return _venue_key_deny(401, "unknown venue key")
        if venue.id != venue_id:
            return _venue_key_deny(403, "a venue key reads its own venue's counts only")
        check_request()
        day = _day(query_arg("date"))
        hours = counts_per_hour(db, venue_id, day)
    return no_store(jsonify({"venue": venue_id, "date": day.isoformat(), "hours": hours}))


@venues_api.post("/venues/<venue_id>/named-requests")
@require_client("auditor")
def open_named_request(venue_id: str) -> Response:
    body = json_object()
    day = _day(body.get("date"))
    services = current_services()
    client = g.client
    with services.transaction() as db:
        try:
            rows = named_request(db, venue_id, day, body.get("reason"), actor=f"auditor:{client.id}",
                                 actor_label=client.name)
        except VenueError as exc:
            raise _refuse(exc) from None
    return no_store(jsonify({"venue": venue_id, "date": day.isoformat(), "checkins": rows}))


# -- services with quotas and their points (docs/service-points.md) -----------------------------------------------
def _signed_point(db: Any) -> ServicePoint | Response:
    """The point whose own key the request carries (401 without one); then the request is checked."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return _venue_key_deny(401, "send Authorization: Bearer <point key>")
    point = point_by_key(db, key.strip())
    if point is None:
        return _venue_key_deny(401, "unknown point key")
    check_request()
    return point


@venues_api.post("/admin/services")
@require_client("admin")
def create_service() -> Response:
    body = json_object()
    with current_services().db.session() as db:
        try:
            answer = service_json(add_service(db, body.get("id"), body.get("name"),  # type: ignore[arg-type]
                                              body.get("daily_quota")))  # type: ignore[arg-type]
        except PointError as exc:
            raise _refuse(exc) from None
    response = jsonify(answer)
    response.status_code = 201
    return response


@venues_api.post("/admin/services/<service_id>/points")
@require_client("admin")
def create_point(service_id: str) -> Response:
    body = json_object()
    with current_services().db.session() as db:
        try:
            point, key = add_point(db, service_id, body.get("id"), body.get("name"))  # type: ignore[arg-type]
        except PointError as exc:
            raise _refuse(exc) from None
        answer = {**point_json(point), "key": key}
    response = jsonify(answer)
    response.status_code = 201
    return no_store(response)


@venues_api.post("/points/uses")
def point_use() -> Response:
    """An online point's scan: verified, and one use taken from the resident's shared quota of the day."""
    services = current_services()
    with services.db.session() as db:
        point = _signed_point(db)
        if isinstance(point, Response):
            return point
        code = json_object().get("code")
        verifier = Verifier(services.online.trust_list(), leeway=services.settings.leeway,
                            replay_guard=StateReplayGuard(services.state))
        try:
            use = use_online(db, services.state, verifier, point, code)
        except StateError:
            raise BadRequest("state_unavailable", "the shared quota cannot be reached; the point decides offline",
                             503) from None
        answer = use.to_dict()
    return jsonify(answer)


@venues_api.post("/points/records")
def point_records() -> Response:
    services = current_services()
    with services.db.session() as db:
        point = _signed_point(db)
        if isinstance(point, Response):
            return point
        # the document bounds the body (a list of at most 500 objects); each record is checked on its own
        answer = ingest_records(db, point, json_object().get("records"), services.evidence_verifier())
    return jsonify(answer)


@venues_api.get("/services/<service_id>/overdraws")
@require_client("admin")
def service_overdraws(service_id: str) -> Response:
    day = _day(query_arg("date"))
    with current_services().db.session() as db:
        try:
            found = overdraws(db, service_id, day)
        except PointError as exc:
            raise _refuse(exc) from None
    return no_store(jsonify({"service": service_id, "date": day.isoformat(), "overdraws": found}))
