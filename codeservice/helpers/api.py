"""Family helpers over HTTP (resident session): name a helper, list and end helpers; as a helper, show the person's
code and answer their requests (docs/without-a-smartphone.md)."""

from __future__ import annotations

import base64
import datetime as dt
import time
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy.orm import Session

from codeservice.consent import service as consent
from codeservice.consent.models import ConsentRequest
from codeservice.consent.service import ConsentError
from codeservice.helpers import service as helpers
from codeservice.identity.session import signed_in_resident
from codeservice.jsonapi import json_object, no_store
from codeservice.services import current_services
from issuers import render
from sdk.citytime import CITY_TZ

helpers_api = Blueprint("helpers_api", __name__, url_prefix="/api/v1")


@helpers_api.errorhandler(ConsentError)
def _refused(exc: ConsentError) -> tuple[Response, int]:
    return jsonify(error=exc.reason, message=exc.message), 422 if exc.status == 400 else exc.status


def _resident() -> str:
    with current_services().db.session() as db:
        return signed_in_resident(db)


def end_of_day(day: dt.date) -> dt.datetime:
    """The end of *day* in city time (the help lasts through its last day)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), CITY_TZ).astimezone(dt.UTC)


@helpers_api.get("/me/helpers")
def my_helpers() -> Response:
    pid = _resident()
    with current_services().db.session() as db:
        out = {"helpers": [helpers.grant_json(db, g) for g in helpers.grants_of(db, pid)],
               "helping": [helpers.grant_json(db, g) for g in helpers.helping(db, pid)]}
    return no_store(jsonify(out))


@helpers_api.post("/me/helpers")
def add_helper() -> tuple[Response, int]:
    pid = _resident()
    body = json_object()  # HelperAdd
    until = end_of_day(dt.date.fromisoformat(body["until"]))
    with current_services().transaction() as db:
        out = helpers.grant_json(db, helpers.add_helper(db, pid, body["helper"], until))
    return no_store(jsonify(out)), 201


@helpers_api.post("/me/helpers/<grant_id>/end")
def end_helper(grant_id: str) -> Response:
    pid = _resident()
    with current_services().transaction() as db:
        out = helpers.grant_json(db, helpers.end_helper(db, pid, grant_id))
    return no_store(jsonify(out))


@helpers_api.get("/me/helping/<resident>/code")
def code_for(resident: str) -> Response:
    pid = _resident()
    services = current_services()
    now = time.time()
    code = helpers.code_for(services, pid, resident)
    svg = render.svg(code)
    return no_store(jsonify(code=code, issued_at=int(now), expires_at=int(now) + services.settings.code_lifetime,
                            svg="data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()))


@helpers_api.get("/me/helping/<resident>/consent-requests")
def requests_for(resident: str) -> Response:
    pid = _resident()
    out = helpers.pending_for(current_services(), pid, resident,
                              lambda db, pending: [consent.describe_request(db, r) for r in pending])
    return no_store(jsonify(requests=out))


def _answered(db: Session, answered: ConsentRequest) -> dict[str, Any]:
    out = consent.describe_request(db, answered)
    out["approved"] = [{"type": i["type"], "fields": list(i["fields"])} for i in answered.approved or []]
    out["fetch_by"] = consent._aware(answered.fetch_by).isoformat() if answered.fetch_by else None
    return out


@helpers_api.post("/me/helping/<resident>/consent-requests/<request_id>")
def answer_for(resident: str, request_id: str) -> Response:
    pid = _resident()
    body = json_object()  # ConsentAnswer
    decision = body["decision"]
    approve = body.get("approve")
    if approve is not None:
        approve = [{"type": i["type"], "fields": list(dict.fromkeys(i["fields"]))} for i in approve]
    out = helpers.answer_for(current_services(), pid, resident, request_id,
                             approve if decision == "approve" else None, _answered,
                             everything=decision == "approve" and approve is None)
    return jsonify(out)
