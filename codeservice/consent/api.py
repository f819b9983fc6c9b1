"""The consented pull over HTTP: clerks request and fetch, residents answer, kiosks hand out queue numbers.

Clerks, devices and auditors authenticate with ``Authorization: Bearer <API key>`` (codeservice/auth.py);
residents with the session cookie of the resident pages (like ``GET /api/v1/me/code``).

Clerk (``clerk`` key):

* ``POST /consent/requests`` ``{code, purpose, items: [{type, fields}], keep_minutes?}`` -> 201
  ``{id, status, answer_by}``. ``code`` is the resident's scanned identity code, verified as at a
  service window; a refused code is 400 ``code_refused`` with the reason.
* ``GET /consent/requests/<id>`` -> ``{id, status, purpose, items, answer_by, fetch_by, keep_minutes,
  approved: [{type, fields}]}`` (names only, never values); another clerk's request is 404.
* ``POST /consent/requests/<id>/fetch`` (body optional: ``{items: [{type, fields}]}``, a subset of what
  was approved) -> 200 ``{certificates: [{type, cert_id, fields, sd_jwt}]}``, once. Refusals:
  403 ``other_clerk`` / ``not_approved`` (asked for more than approved), 404 ``not_found``,
  409 ``already_fetched`` / ``not_approved`` (pending, refused, expired), 410 ``window_closed``,
  403 ``identity_frozen`` (the resident froze their identity after approving: a lost phone may have approved).
* ``POST /queue/next`` ``{service}`` -> 200 ``{number, service, office}``, or 204 when nobody waits.

Device (``device`` key): ``POST /queue/tickets`` ``{code, service}`` -> 201 ``{number, service, office,
office_name, day}``.

Resident (session cookie; 401 without, 403 ``frozen`` for a frozen identity):

* ``GET /me/consent-requests`` -> ``{requests: [...]}``: the pending requests, each with who asks
  (office, clerk), the purpose, each certificate and field (labels), how long the clerk may keep it.
* ``POST /me/consent-requests/<id>`` ``{decision: "approve" | "refuse", approve?: [{type, fields}]}``
  -> the request as described, with ``approved``. ``approve`` omitted approves everything asked.
* ``GET /me/access-log`` -> ``{entries: [{seq, at, action, who, purpose, outcome, text}]}``: the
  resident's own access-log entries, newest first, in plain language (times of day in city time); overdue
  requests are expired (and logged) first.

Auditor (``auditor`` key; clerks and devices get 403): ``GET /audit/log?after=SEQ&limit=N`` ->
``{entries: [...every field, hashes included], next_after}``; ``GET /audit/verify`` -> the chain report
``{ok, entries, checkpoints, first_bad_seq, problem}``.

Every clerk and device endpoint counts against the client's ``rate_per_minute`` (state store,
one-minute window); beyond it: 403 ``rate_limited``, and the attempt is in the access log. With the
state store unreachable: 503 ``state_unavailable``. Every request, decision, fetch and refusal is in
the access log, committed with (or instead of) the change it records; a signed checkpoint is made
whenever the log passes a multiple of ``accesslog.CHECKPOINT_EVERY`` entries.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy.orm import Session

from codeservice.clients.auth import require_client
from codeservice.consent import service as consent
from codeservice.consent.models import ConsentRequest
from codeservice.consent.service import ConsentError
from codeservice.contract import check_request
from codeservice.identity.session import signed_in_resident
from codeservice.jsonapi import UNPROCESSABLE, BadRequest, json_object, no_store, query_arg
from codeservice.services import current_services
from codeservice.state import StateError

consent_api = Blueprint("consent_api", __name__, url_prefix="/api/v1")

F = TypeVar("F", bound=Callable[..., Any])



@consent_api.errorhandler(ConsentError)
def _consent_error(exc: ConsentError) -> tuple[Response, int]:
    # The document refused every malformed request before the service saw it (codeservice/contract.py): what the
    # service still refuses as a client's error is a request of the right shape it cannot carry out.
    status = UNPROCESSABLE if exc.status == 400 else exc.status
    return jsonify(error=exc.reason, message=exc.message), status


@consent_api.errorhandler(StateError)
def _state_error(exc: StateError) -> tuple[Response, int]:
    return jsonify(error="state_unavailable", message=str(exc)), 503


# -- clients and rate limits -----------------------------------------------------------------------
def _client(role: str, *, limited: bool = True) -> Callable[[F], F]:
    """``require_client(role)``, then (for clerks and devices) the client's rate limit, then the document's check
    of the request."""

    def decorator(view: F) -> F:
        @wraps(view)
        def limited_view(*args: Any, **kwargs: Any) -> Any:
            if limited:
                current_services().consent.check_rate(g.client, method=request.method, path=request.path)
            check_request()  # after the rate limit: a malformed request counts too
            return view(*args, **kwargs)

        return require_client(role, check=False)(limited_view)  # type: ignore[return-value]

    return decorator


def _resident() -> str:
    with current_services().db.session() as db:
        return signed_in_resident(db)


# -- request parsing ---------------------------------------------------------------------------
def _items(value: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The document's ``[{type, fields: [names]}]`` (1 to 32 ConsentItems), each type once (which JSON Schema cannot
    say of a member: 422), each field once."""
    clean: list[dict[str, Any]] = []
    for item in value:
        code, fields = item["type"], item["fields"]
        if any(c["type"] == code for c in clean):
            raise BadRequest("invalid_body", f"'{name}': {code} appears twice", UNPROCESSABLE)
        clean.append({"type": code, "fields": list(dict.fromkeys(fields))})
    return clean


def _created(data: dict[str, Any], location: str | None = None) -> tuple[Response, int]:
    response = jsonify(data)
    if location:
        response.headers["Location"] = location
    return response, 201


# -- the clerk -----------------------------------------------------------------------------------
@consent_api.post("/consent/requests")
@_client("clerk")
def create_request() -> tuple[Response, int]:
    body = json_object()  # ConsentRequestCreate
    code, purpose = body["code"], body["purpose"]
    items = _items(body["items"], "items")
    keep_minutes = body.get("keep_minutes", 30)
    made = current_services().consent.request(g.client, code=code, purpose=purpose, items=items,
                                              keep_minutes=keep_minutes, beneficiary=body.get("beneficiary"))
    out = {"id": made.id, "status": made.status, "answer_by": consent._aware(made.answer_by).isoformat()}
    return _created(out, f"/api/v1/consent/requests/{made.id}")


def _clerk_view(db: Session, made: ConsentRequest) -> dict[str, Any]:
    return {
        "id": made.id, "status": made.status, "purpose": made.purpose,
        "items": [{"type": i["type"], "fields": list(i["fields"])} for i in made.items],
        "answer_by": consent._aware(made.answer_by).isoformat(),
        "fetch_by": consent._aware(made.fetch_by).isoformat() if made.fetch_by else None,
        "keep_minutes": made.keep_minutes,
        "approved": [{"type": i["type"], "fields": list(i["fields"])} for i in made.approved or []],
    }


@consent_api.get("/consent/requests/<request_id>")
@_client("clerk")
def show_request(request_id: str) -> Response:
    return no_store(jsonify(current_services().consent.clerk_request(g.client, request_id, _clerk_view)))


@consent_api.post("/consent/requests/<request_id>/fetch")
@_client("clerk")
def fetch_request(request_id: str) -> Response:
    body = json_object()  # FetchRequest, or no body at all
    items = _items(body["items"], "items") if body.get("items") is not None else None
    released = current_services().consent.fetch(g.client, request_id, items)
    return no_store(jsonify(certificates=released))


# -- queue tickets (取号) ---------------------------------------------------------------------------
@consent_api.post("/queue/tickets")
@_client("device")
def issue_ticket() -> tuple[Response, int]:
    body = json_object()  # TicketRequest
    code, service = body["code"], body["service"]
    ticket, office = current_services().consent.ticket(g.client, code=code, service=service)
    return _created({"number": ticket.number, "service": ticket.service, "office": ticket.office_id,
                     "office_name": office.name if office else ticket.office_id, "day": ticket.day.isoformat()})


@consent_api.post("/queue/next")
@_client("clerk")
def call_next() -> Response | tuple[str, int]:
    ticket = current_services().consent.call_next(g.client, json_object()["service"])  # QueueNextRequest
    if ticket is None:
        return "", 204
    return jsonify(number=ticket.number, service=ticket.service, office=ticket.office_id)


# -- the resident ----------------------------------------------------------------------------------
@consent_api.get("/me/consent-requests")
def my_requests() -> Response:
    out = current_services().consent.pending(
        _resident(), lambda db, pending: [consent.describe_request(db, r) for r in pending])
    return no_store(jsonify(requests=out))


@consent_api.post("/me/consent-requests/<request_id>")
def answer_request(request_id: str) -> Response:
    pid = _resident()
    body = json_object()  # ConsentAnswer: approve or refuse; a refusal approves nothing
    decision = body["decision"]
    approve = _items(body["approve"], "approve") if body.get("approve") is not None else None
    return jsonify(current_services().consent.answer(pid, request_id, approve if decision == "approve" else None,
                                                     _answered, everything=decision == "approve" and approve is None))


def _answered(db: Session, answered: ConsentRequest) -> dict[str, Any]:
    out = consent.describe_request(db, answered)
    out["approved"] = [{"type": i["type"], "fields": list(i["fields"])} for i in answered.approved or []]
    out["fetch_by"] = consent._aware(answered.fetch_by).isoformat() if answered.fetch_by else None
    return out


@consent_api.get("/me/access-log")
def my_access_log() -> Response:
    pid = _resident()
    limit = query_arg("limit")
    return no_store(jsonify(entries=current_services().consent.history(pid, limit)))
