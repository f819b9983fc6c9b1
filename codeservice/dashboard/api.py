"""The dashboards' JSON: ``/api/v1/dashboard/operator/*`` (an operator key: only its own operator's figures)
and ``/api/v1/dashboard/city/*`` (an auditor key: the city's data office).

The operator is the one the key belongs to, never one named in the request: there is no parameter through
which a key could ask for another operator's figures.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, g, jsonify
from sqlalchemy.orm import Session

from codeservice.clients.auth import require_client
from codeservice.dashboard import city, service
from codeservice.jsonapi import BadRequest, no_store, query_arg
from codeservice.services import Services, current_services
from codeservice.transit.clearing import parse_day
from codeservice.transit.models import Operator

#: The days a dashboard shows (a day and the week before it must be dates).
FIRST_DAY, LAST_DAY = dt.date(2000, 1, 1), dt.date(2999, 12, 31)

dashboard_api = Blueprint("dashboard_api", __name__, url_prefix="/api/v1/dashboard")


def the_day(text: Any) -> dt.date:
    """``day`` as the document types it (``ServiceDay``, checked before the view: 400 ``invalid_day``)."""
    day = parse_day(text) if isinstance(text, str) else None
    if day is None:
        raise BadRequest("invalid_day", "day: an operating day written YYYY-MM-DD", 400)
    if not FIRST_DAY <= day <= LAST_DAY:
        raise BadRequest("day_out_of_range", f"day: from {FIRST_DAY} to {LAST_DAY}", 422)
    return day


def operator_of(db: Session, operator_id: str | None) -> Operator:
    """The operator a signed-in operator key or session belongs to (fails closed: 403 without one)."""
    operator = db.get(Operator, operator_id) if operator_id else None
    if operator is None:
        raise BadRequest("forbidden", "this key belongs to no operator", 403)
    return operator


def operator_figures(services: Services, part: str, operator_id: str | None, day: dt.date,
                     against: str = "last_week") -> dict[str, Any]:
    """One of the operator's figures (``day``, ``gates``, ``clearing``), for the API and the page alike."""
    with services.db.session() as db:
        operator = operator_of(db, operator_id)
        if part == "day":
            return service.operator_day(db, operator, day, against)
        if part == "gates":
            return service.operator_gates(db, operator, day)
        return service.operator_clearing(db, operator, day)


def city_figures(services: Services, part: str, day: dt.date | None) -> dict[str, Any]:
    """One of the data office's figures (``day``, ``state``, ``points``), for the API and the page alike."""
    s = services.settings
    with services.db.session() as db:
        if part == "day":
            assert day is not None
            body = service.city_day(db, day)
            body["shows"] = city.certificate_shows(db, [dt.date.fromisoformat(d) for d in body["days"]])
            return body
        if part == "points":
            assert day is not None
            return city.service_points(db, day)
        body = service.city_state(db, services.keyring, status_list_size=s.status_list_size,
                                  status_ttl=s.status_ttl, status_validity=s.status_validity)
        body["audit"] = city.audit_summary(db)
        return body


@dashboard_api.get("/operator/day")
@require_client("operator")
def operator_day() -> Response:
    body = operator_figures(current_services(), "day", g.client.operator_id, the_day(query_arg("day")),
                            query_arg("against"))
    return no_store(jsonify(body))


@dashboard_api.get("/operator/gates")
@require_client("operator")
def operator_gates() -> Response:
    body = operator_figures(current_services(), "gates", g.client.operator_id, the_day(query_arg("day")))
    return no_store(jsonify(body))


@dashboard_api.get("/operator/clearing")
@require_client("operator")
def operator_clearing() -> Response:
    body = operator_figures(current_services(), "clearing", g.client.operator_id, the_day(query_arg("day")))
    return no_store(jsonify(body))


@dashboard_api.get("/city/day")
@require_client("auditor")
def city_day() -> Response:
    return no_store(jsonify(city_figures(current_services(), "day", the_day(query_arg("day")))))


@dashboard_api.get("/city/state")
@require_client("auditor")
def city_state() -> Response:
    return no_store(jsonify(city_figures(current_services(), "state", None)))


@dashboard_api.get("/city/points")
@require_client("auditor")
def city_points() -> Response:
    return no_store(jsonify(city_figures(current_services(), "points", the_day(query_arg("day")))))
