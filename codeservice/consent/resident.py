"""Pages for the resident: pending requests to approve or refuse, and the history of every access."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WResponse

from codeservice.certificates.models import CertType
from codeservice.consent import service as consent
from codeservice.consent.models import ConsentRequest, Office
from codeservice.consent.pages import (
    aware,
    check_csrf_form,
    fields_from_form,
    html_page,
    json_error,
    keep_text,
    labels_of,
    no_store,
    utcnow,
)
from codeservice.consent.service import ConsentError
from codeservice.identity.session import login_required
from codeservice.services import current_services

resident_requests = Blueprint("requests", __name__)


# -- the resident ----------------------------------------------------------------------------------
def _pid() -> str:
    pid = session.get("resident")
    assert isinstance(pid, str)  # login_required
    return pid


def _cards(db: Session, pending: list[ConsentRequest]) -> list[dict[str, Any]]:
    cards = []
    now = utcnow()
    for req in pending:
        described = consent.describe_request(db, req)
        for item in described["items"]:
            labels = labels_of(db.get(CertType, item["type"]))
            for field in item["fields"]:
                field["yesno"] = labels.get(field["name"], {}).get("kind") == "predicate"
        described["keep_text"] = keep_text(req.keep_minutes)
        described["seconds_left"] = max(0, int((aware(req.answer_by) - now).total_seconds()))
        described["any_held"] = any(i["held"] for i in described["items"])
        cards.append(described)
    return cards


def _answered_message(db: Session, pid: str, request_id: str) -> str | None:
    req = db.get(ConsentRequest, request_id)
    if req is None or req.resident != pid or req.status not in ("approved", "refused", "fetched"):
        return None
    office = db.get(Office, req.office_id)
    where = office.name if office else req.office_id
    if req.status == "refused":
        return f"You refused the request from {where}. Nothing was shared."
    shared = []
    for item in req.approved or []:
        cert_type = db.get(CertType, item["type"])
        labels = labels_of(cert_type)
        name = cert_type.name.split(" (")[0].lower() if cert_type else item["type"]
        shared.append(f"your {name} ({', '.join(labels.get(f, {}).get('label', f) for f in item['fields'])})")
    return f"You let {where} take {'; '.join(shared)} for {req.purpose}. They can take it once."


def _render_requests(pid: str, *, error: str | None = None, status: int = 200) -> WResponse:
    answered = request.args.get("answered")

    def page(db: Session, pending: list[ConsentRequest]) -> str:
        notice = _answered_message(db, pid, answered) if answered else None
        return render_template("requests.html", cards=_cards(db, pending), notice=notice, error=error)

    return html_page(current_services().consent.pending(pid, page), status)


@resident_requests.get("/requests")
@login_required
def requests_page() -> WResponse:
    return _render_requests(_pid())


@resident_requests.get("/requests/pending")
def pending_json() -> WResponse:
    pid = session.get("resident")
    if not isinstance(pid, str) or not pid:
        return json_error(401, "unauthorised", "sign in first")
    listed = current_services().consent.pending(pid, lambda db, pending: [
        {"id": c["id"], "html": render_template("_request_card.html", r=c)} for c in _cards(db, pending)])
    return no_store(jsonify(requests=listed))


@resident_requests.post("/requests/<request_id>")
@login_required
def answer(request_id: str) -> WResponse:
    check_csrf_form()
    decision = request.form.get("decision")
    pid = _pid()
    approve: list[dict[str, Any]] | None = None
    try:
        if decision == "approve":
            chosen = fields_from_form(request.form.getlist("fields"))
            if not chosen:
                raise ConsentError("nothing_chosen", "Tick at least one item to share, or press Refuse.")
            approve = [{"type": t, "fields": names} for t, names in chosen.items()]
        elif decision != "refuse":
            raise ConsentError("invalid_body", "Choose Approve selected or Refuse.")
        current_services().consent.answer(pid, request_id[:64], approve, lambda _db, _answered: None)
    except ConsentError as exc:
        message = exc.message if exc.reason != "not_pending" else \
            "That request is no longer waiting for an answer (it was answered or has expired)."
        return _render_requests(pid, error=message, status=exc.status)
    return redirect(url_for("requests.requests_page", answered=request_id), 303)


@resident_requests.get("/history")
@login_required
def history_page() -> WResponse:
    pid = _pid()
    entries = current_services().consent.history(pid)
    for entry in entries:
        # The sentence ends with the time of day; the page shows the date and time (city time) beside it.
        moment = consent.city_time(entry["at"])
        entry["text"] = entry["text"].removesuffix(", " + moment.strftime("%H:%M"))
        entry["city_at"] = moment.strftime("%Y-%m-%d %H:%M")
        entry["kind"] = ("refused" if "refused" in entry["outcome"] or entry["action"] == "refuse" else
                         "took" if entry["action"] == "fetch" else entry["action"])
    return html_page(render_template("history.html", entries=entries))

