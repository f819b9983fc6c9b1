"""Pages for the resident: pending requests to approve or refuse, and the history of every access."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WResponse

from codeservice.accesslog.models import AccessLogEntry
from codeservice.certificates.models import CertType
from codeservice.certificates.service import disclosable
from codeservice.consent import service as consent
from codeservice.consent.models import ConsentRequest, Office
from codeservice.consent.pages import (
    aware,
    check_csrf_form,
    consent_message,
    fields_from_form,
    html_page,
    in_sentence,
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
        return _("You refused the request from %(office)s. Nothing was shared.", office=where)
    shared = []
    for item in req.approved or []:
        cert_type = db.get(CertType, item["type"])
        labels = labels_of(cert_type)
        name = in_sentence(cert_type.name) if cert_type else item["type"]
        fields = ", ".join(labels.get(f, {}).get("label", f) for f in item["fields"])
        shared.append(_("your %(name)s (%(fields)s)", name=name, fields=fields))
    return _("You let %(office)s take %(what)s for %(purpose)s. They can take it once.",
             office=where, what="; ".join(shared), purpose=req.purpose)


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
                raise ConsentError("nothing_chosen", consent_message("nothing_chosen", ""))
            approve = [{"type": t, "fields": names} for t, names in chosen.items()]
        elif decision != "refuse":
            raise ConsentError("invalid_body", consent_message("no_decision", ""))
        current_services().consent.answer(pid, request_id[:64], approve, lambda _db, _answered: None)
    except ConsentError as exc:
        message = consent_message(exc.reason, exc.message)
        return _render_requests(pid, error=message, status=exc.status)
    return redirect(url_for("requests.requests_page", answered=request_id), 303)


@resident_requests.get("/history")
@login_required
def history_page() -> WResponse:
    pid = _pid()
    entries = current_services().consent.history(pid, describe=_sentence)
    for entry in entries:
        # The page shows the date and time (city time) beside the sentence.
        entry["kind"] = ("refused" if "refused" in entry["outcome"] or entry["action"] == "refuse" else
                         "took" if entry["action"] == "fetch" else entry["action"])
    return html_page(render_template("history.html", entries=entries))



# -- the history in the reader's language ---------------------------------------------------------------------------
#: Why a step was refused (the access log's outcome after "refused: "), as the resident reads it.
_REFUSALS = {
    "already_fetched": lazy_gettext("it had been taken once already"),
    "other_clerk": lazy_gettext("another clerk had asked for it"),
    "not_approved": lazy_gettext("you had not approved it"),
    "window_closed": lazy_gettext("the time to take it had passed"),
    "not_found": lazy_gettext("there was no such request"),
    "purpose": lazy_gettext("that office may not state that purpose"),
    "rate limit": lazy_gettext("too many requests"),
    "identity_frozen": lazy_gettext("your identity was frozen"),
    "type_not_allowed": lazy_gettext("they may not ask about that certificate"),
    "predicate_not_allowed": lazy_gettext("they may not ask that question"),
    "unknown_service": lazy_gettext("there is no such queue"),
    "unknown_type": lazy_gettext("there is no such certificate type"),
    "invalid_value": lazy_gettext("that is not a question about it"),
    "busy": lazy_gettext("the queue was busy"),
    "not_needed_for_purpose": lazy_gettext("the purpose did not need it"),
}


def _why(outcome: str) -> str:
    reason = outcome.removeprefix("refused").lstrip(": ").strip()
    if reason.startswith("code "):
        return _("the code shown was not accepted")
    text = _REFUSALS.get(reason)
    return str(text) if text is not None else (reason.replace("_", " ") or _("refused"))


def _sentence(entry: AccessLogEntry, types: list[CertType]) -> str:
    """One access-log entry in the reader's language, without its time (the page shows it beside)."""
    names = {t.code: in_sentence(t.name) for t in types}
    labels = {(t.code, d["name"]): in_sentence(d["label"], label=True) for t in types for d in disclosable(t)}

    def thing(item: Mapping[str, Any]) -> str:
        code = item.get("type", "")
        fields = ", ".join(labels.get((code, f), f) for f in item.get("fields", []))
        return _("your %(name)s (%(fields)s)", name=names.get(code, code), fields=fields)

    things = "; ".join(thing(i) for i in entry.what if isinstance(i, Mapping) and "type" in i) or _("your identity")
    purpose = _(" for %(purpose)s", purpose=entry.purpose) if entry.purpose else ""
    who, outcome = entry.actor_label, entry.outcome
    words = {"who": who, "things": things, "purpose": purpose}
    refused = outcome.startswith("refused")
    if entry.action == "fetch":
        if outcome == "released":
            return _("%(who)s took %(things)s%(purpose)s", **words)
        return _("%(who)s tried to take %(things)s%(purpose)s; refused: %(why)s", why=_why(outcome), **words)
    if entry.action == "request" and outcome == "pending":
        return _("%(who)s asked for %(things)s%(purpose)s", **words)
    if entry.action == "request" and refused:
        return _("%(who)s asked for %(things)s%(purpose)s; refused: %(why)s", why=_why(outcome), **words)
    if entry.action == "approve":
        return _("You let %(whom)s take %(things)s%(purpose)s", whom=outcome.removeprefix("approved for "), **words)
    if entry.action == "refuse":
        return _("You refused %(whom)s: %(things)s%(purpose)s", whom=outcome.removeprefix("refused for "), **words)
    if entry.action == "expire":
        return _("A request for %(things)s%(purpose)s expired unanswered", **words)
    if entry.action == "ticket":
        first = entry.what[0] if entry.what and isinstance(entry.what[0], Mapping) else {}
        service = first.get("service") or ""
        if refused:
            return _("%(who)s did not give you a queue number (%(service)s); refused: %(why)s",
                     who=who, service=service, why=_why(outcome))
        return _("%(who)s gave you queue number %(number)s (%(service)s)", who=who, service=service,
                 number=first.get("number", ""))
    if entry.action == "check":
        if refused:
            return _("%(who)s tried to check whether you hold %(things)s%(purpose)s; refused: %(why)s",
                     why=_why(outcome), **words)
        return _("%(who)s checked whether you hold %(things)s%(purpose)s: %(outcome)s", outcome=outcome, **words)
    return _("%(who)s: %(action)s %(things)s%(purpose)s (%(outcome)s)", action=entry.action, outcome=outcome, **words)
