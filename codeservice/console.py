"""Pages: the clerk's console, and the resident's pending requests and access history.

These pages call the service layer (codeservice/consent.py) directly; the JSON API for other systems is
codeservice/consent_api.py.

Clerk console. A clerk is signed in by ``session["clerk"]`` (the id of an active API client of role clerk),
a key distinct from a resident's ``session["resident"]``: signing in as one clears the other.

- ``GET /console/signin``: in development (settings.dev_signin) a list of the clerks to pick; always a form
  to paste a clerk's API key. ``POST /console/signin/dev`` {csrf, clerk}, ``POST /console/signin/key`` {csrf,
  key}, ``POST /console/signout`` {csrf}.
- ``GET /console``: scan a resident's identity code (a scanner types it like a keyboard), choose the purpose
  and the fields wanted; ``?request=<id>`` also shows that request's progress (static/console.js polls it).
- ``POST /console/requests`` (form, csrf): verifies the code (valid, unexpired, identity not frozen) and
  creates the request; redirects to ``/console?request=<id>``.
- ``GET /console/requests/<id>``: JSON status of one of the clerk's own requests.
- ``POST /console/requests/<id>/receive`` (JSON, header ``X-CSRF-Token``): fetches the approved certificates
  once, verifies each SD-JWT against the service's current trust list, and answers what they disclose.

Resident pages (signed in as in web.py):

- ``GET /requests``: pending requests, each with its fields to tick; static/requests.js polls
  ``GET /requests/pending`` (JSON: each pending request's id and card HTML) for new ones.
- ``POST /requests/<id>`` (form, csrf; ``decision`` approve or refuse, ``fields`` = ``TYPE:name`` ...).
- ``GET /history``: the access log entries about the resident, newest first, in plain language.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, redirect, render_template, request, session, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WResponse

from codeservice import accesslog, consent
from codeservice.app import services_of
from codeservice.certificates import client_by_key, disclosable
from codeservice.consent import ConsentError
from codeservice.models import ApiClient, CertType, ConsentRequest, Department, Office
from codeservice.residents import get_resident
from codeservice.services import Services
from codeservice.state import StateError
from codeservice.web import login_required
from issuers.trustlist import current_trust_list
from sdk.reasons import DESCRIPTIONS, Reason
from sdk.sdjwt import SdJwtError, verify_sd_jwt

console = Blueprint("console", __name__)

SCENE = "service-window"  # the clerk may re-scan a code while it lives
MAX_CODE_CHARS = 2048
MAX_KEY_CHARS = 200
MAX_FIELDS = 64
KEEP_CHOICES = [(15, "15 minutes"), (30, "30 minutes"), (60, "1 hour"), (240, "4 hours"), (1440, "1 day")]
DEFAULT_KEEP = 30
CSRF_HEADER = "X-CSRF-Token"


# -- helpers -------------------------------------------------------------------------------------
def _services() -> Services:
    return services_of(current_app)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else _aware(value).isoformat()


def _no_store(response: Response) -> WResponse:
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(html: str, status: int = 200) -> WResponse:
    return _no_store(Response(html, status=status, mimetype="text/html"))


def _json_error(status: int, error: str, message: str) -> WResponse:
    response = jsonify(error=error, message=message)
    response.status_code = status
    return _no_store(response)


def _check_csrf_form() -> None:
    sent = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    if not sent or not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        abort(400, "the form expired; reload the page and try again")


def _csrf_header_ok() -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    expected = session.get("csrf", "")
    return bool(sent) and isinstance(expected, str) and bool(expected) and secrets.compare_digest(sent, expected)


def _start(key: str, value: Any) -> None:
    """A fresh session for one role: a clerk's sign-in ends a resident's session in this browser and back."""
    session.clear()
    session[key] = value
    session["csrf"] = secrets.token_urlsafe(24)


def _fields_from_form(values: Iterable[str]) -> dict[str, list[str]]:
    """``TYPE:name`` values of ticked boxes, grouped by certificate type in the order given."""
    chosen: dict[str, list[str]] = {}
    for value in list(values)[:MAX_FIELDS]:
        code, sep, name = value.partition(":")
        if sep and code and name and name not in chosen.setdefault(code, []):
            chosen[code].append(name)
    return {code: names for code, names in chosen.items() if names}


def _labels(cert_type: CertType | None) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in disclosable(cert_type)} if cert_type is not None else {}


def _keep_text(minutes: int) -> str:
    if minutes % 1440 == 0:
        days = minutes // 1440
        return f"{days} day" + ("s" if days != 1 else "")
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour" + ("s" if hours != 1 else "")
    return f"{minutes} minute" + ("s" if minutes != 1 else "")


# -- the clerk -----------------------------------------------------------------------------------
def _clerk(db: Session) -> ApiClient | None:
    """The signed-in clerk, if still an active clerk of an office."""
    clerk_id = session.get("clerk")
    if type(clerk_id) is not int:
        return None
    client = db.get(ApiClient, clerk_id)
    if client is None or not client.active or client.role != "clerk" or not client.office_id:
        return None
    return client


def _to_signin() -> WResponse:
    session.pop("clerk", None)
    return redirect(url_for("console.signin"))


@console.get("/console/signin")
def signin() -> WResponse:
    services = _services()
    clerks: list[dict[str, Any]] = []
    if services.settings.dev_signin:
        with services.db.session() as db:
            rows = db.execute(
                select(ApiClient, Office).join(Office, ApiClient.office_id == Office.id)
                .where(ApiClient.role == "clerk", ApiClient.active.is_(True))
                .order_by(Office.name, ApiClient.name).limit(50))
            clerks = [{"id": c.id, "name": c.name, "office": o.name} for c, o in rows]
    error = request.args.get("error")
    messages = {"key": "That is not an active clerk's API key.", "clerk": "No such clerk.",
                "expired": "Your console session ended; sign in again."}
    return _page(render_template("console_signin.html", dev_signin=services.settings.dev_signin, clerks=clerks,
                                 error=messages.get(error or "")))


@console.post("/console/signin/dev")
def signin_dev() -> WResponse:
    services = _services()
    if not services.settings.dev_signin:
        abort(404)
    _check_csrf_form()
    try:
        clerk_id = int(request.form.get("clerk", ""))
    except ValueError:
        clerk_id = 0
    with services.db.session() as db:
        client = db.get(ApiClient, clerk_id) if clerk_id > 0 else None
        ok = client is not None and client.active and client.role == "clerk" and bool(client.office_id)
    if not ok:
        return redirect(url_for("console.signin", error="clerk"))
    _start("clerk", clerk_id)
    return redirect(url_for("console.console_page"))


@console.post("/console/signin/key")
def signin_key() -> WResponse:
    _check_csrf_form()
    key = request.form.get("key", "").strip()
    services = _services()
    with services.db.session() as db:
        client = client_by_key(db, key) if 0 < len(key) <= MAX_KEY_CHARS else None
        clerk_id = client.id if client is not None and client.role == "clerk" and client.office_id else None
    if clerk_id is None:
        return redirect(url_for("console.signin", error="key"))
    _start("clerk", clerk_id)
    return redirect(url_for("console.console_page"))


@console.post("/console/signout")
def signout() -> WResponse:
    _check_csrf_form()
    session.clear()
    return redirect(url_for("console.signin"))


def _office_types(db: Session, office: Office) -> list[dict[str, Any]]:
    listed = []
    for code in office.cert_types:
        cert_type = db.get(CertType, code)
        if cert_type is not None:
            listed.append({"code": code, "name": cert_type.name, "fields": disclosable(cert_type)})
    return listed


def _render_console(db: Session, clerk: ApiClient, *, error: str | None = None, status: int = 200,
                    form: dict[str, Any] | None = None, shown: ConsentRequest | None = None) -> WResponse:
    office = db.get(Office, clerk.office_id)
    assert office is not None
    form = form or {}
    return _page(render_template(
        "console.html", clerk=clerk.name, office=office.name, purposes=office.purposes,
        types=_office_types(db, office), keep_choices=KEEP_CHOICES, error=error,
        chosen_purpose=form.get("purpose"), chosen_fields=set(form.get("fields", [])),
        chosen_keep=form.get("keep", DEFAULT_KEEP),
        shown=_clerk_view(db, shown) if shown is not None else None,
    ), status)


@console.get("/console")
def console_page() -> WResponse:
    services = _services()
    with services.db.session() as db:
        clerk = _clerk(db)
        if clerk is None:
            return _to_signin()
        shown = None
        wanted = request.args.get("request")
        if wanted:
            shown = db.get(ConsentRequest, wanted)
            if shown is not None and shown.clerk_id != clerk.id:
                shown = None  # another clerk's request is nobody's business here
            if shown is not None:
                consent.expire_overdue(db, resident=shown.resident)
                db.refresh(shown)
                services.checkpoint_if_due(db)
        last = session.get("console_form")
        return _render_console(db, clerk, shown=shown, form=last if isinstance(last, dict) else None)


def _resident_from_code(services: Services, db: Session, text: str) -> tuple[str | None, str | None]:
    """(pid, None) for a genuine, unexpired identity code of an unfrozen resident, else (pid or None, refusal)."""
    if len(text) > MAX_CODE_CHARS:
        return None, "not_a_citycode: too long"
    result = services.online.verify(text, SCENE)
    subject = result.subject  # set only when the signature verified
    if not result.accepted:
        return subject, result.reason.value
    if result.kind != "id" or subject is None:
        return None, "wrong_kind"
    resident = get_resident(db, subject)
    if resident is None or resident.frozen:
        return subject, "suspended: identity frozen or unknown"
    return subject, None


def _code_message(refusal: str) -> str:
    if refusal.startswith("suspended"):
        return "This identity is frozen or unknown; the resident should contact the identity office."
    reason = refusal.split(":")[0]
    try:
        description = DESCRIPTIONS[Reason(reason)]
    except ValueError:
        description = reason.replace("_", " ")
    return f"The code was not accepted: {description}. Ask the resident to show their code again."


def _log_refusal(db: Session, clerk: ApiClient, *, action: str, reason: str, subject: str | None = None,
                 purpose: str | None = None, what: list[Any] | None = None) -> None:
    """As the JSON API logs a refused step (codeservice/consent_api.py)."""
    office = db.get(Office, clerk.office_id) if clerk.office_id else None
    actor, label = consent.actor_of(clerk, office)
    accesslog.append(db, actor=actor, actor_label=label, office=clerk.office_id, subject=subject, action=action,
                     what=what or [], purpose=purpose[:300] if purpose else None, outcome=f"refused: {reason}"[:64])


def _within_rate(services: Services, clerk: ApiClient) -> None:
    """The clerk's allowance a minute, shared with the JSON API (same counter); the refused attempt is logged.

    Only sending and receiving count: the console's status polls do not."""
    try:
        used = services.state.count(f"rate:{clerk.id}", 60)
    except StateError:
        raise ConsentError("unavailable", "The service cannot check the request allowance now; try again.",
                           503) from None
    if used <= clerk.rate_per_minute:
        return
    with services.db.session() as db:
        office = db.get(Office, clerk.office_id) if clerk.office_id else None
        actor, label = consent.actor_of(clerk, office)
        accesslog.append(db, actor=actor, actor_label=label, office=clerk.office_id, action="rate_limited",
                         what=[{"method": request.method, "path": request.path[:200]}], outcome="refused")
        services.checkpoint_if_due(db)
    raise ConsentError("rate_limited", f"More than {clerk.rate_per_minute} requests a minute: the attempt was "
                                       "logged; wait a minute and try again.", 403)


def _signed_in_clerk(services: Services) -> ApiClient | None:
    with services.db.session() as db:
        clerk = _clerk(db)
        if clerk is not None:
            db.expunge(clerk)
        return clerk


@console.post("/console/requests")
def send_request() -> WResponse:
    _check_csrf_form()
    services = _services()
    code = request.form.get("code", "").strip()
    purpose = request.form.get("purpose", "")
    fields = request.form.getlist("fields")
    try:
        keep = int(request.form.get("keep_minutes", DEFAULT_KEEP))
    except ValueError:
        keep = -1
    form = {"purpose": purpose, "fields": fields, "keep": keep}
    signed_in = _signed_in_clerk(services)
    if signed_in is None:
        return _to_signin()
    error: ConsentError | None = None
    if not code:
        error = ConsentError("no_code", "Scan the resident's code first.")
    else:
        try:
            _within_rate(services, signed_in)  # in its own transaction: the refusal stays logged
        except ConsentError as exc:
            error = exc
    with services.db.session() as db:
        clerk = _clerk(db)
        if clerk is None:
            return _to_signin()
        chosen = _fields_from_form(fields)
        items = [{"type": t, "fields": names} for t, names in chosen.items()]
        request_id = None
        if error is None:
            subject, refusal = _resident_from_code(services, db, code)
            if refusal is not None:
                _log_refusal(db, clerk, action="request", reason=f"code {refusal}", subject=subject,
                             purpose=purpose, what=items)
                error = ConsentError("code_refused", _code_message(refusal))
            elif not chosen:
                error = ConsentError("invalid_body", "Tick at least one field to ask for.")
            elif keep not in dict(KEEP_CHOICES):
                error = ConsentError("invalid_body", "Choose how long you will keep the data.")
            else:
                assert subject is not None
                try:
                    request_id = consent.create_request(
                        db, clerk, resident=subject, purpose=purpose, items=items, keep_minutes=keep,
                        answer_minutes=services.settings.consent_answer_minutes).id
                except ConsentError as exc:
                    if exc.reason != "purpose_not_allowed":  # create_request logged that one itself
                        _log_refusal(db, clerk, action="request", reason=exc.reason, subject=subject,
                                     purpose=purpose, what=items)
                    error = exc
            services.checkpoint_if_due(db)
        if error is not None:
            # Inside the transaction, which commits: the logged refusal is kept.
            return _render_console(db, clerk, error=error.message, status=error.status, form=form)
    session["console_form"] = {"purpose": purpose, "fields": fields[:MAX_FIELDS], "keep": keep}  # the next resident
    return redirect(url_for("console.console_page", request=request_id), 303)


def _clerk_view(db: Session, req: ConsentRequest) -> dict[str, Any]:
    """A request as its clerk sees it: what was asked and approved (names only, never values)."""
    def described(items: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if items is None:
            return None
        out = []
        for item in items:
            cert_type = db.get(CertType, item["type"])
            labels = _labels(cert_type)
            out.append({"type": item["type"], "type_name": cert_type.name if cert_type else item["type"],
                        "fields": [{"name": f, "label": labels.get(f, {}).get("label", f)} for f in item["fields"]]})
        return out

    now = _utcnow()
    open_ = req.status == "approved" and req.fetch_by is not None and now <= _aware(req.fetch_by)
    return {"id": req.id, "status": req.status, "purpose": req.purpose, "keep_minutes": req.keep_minutes,
            "keep_text": _keep_text(req.keep_minutes), "created_at": _iso(req.created_at),
            "answer_by": _iso(req.answer_by), "fetch_by": _iso(req.fetch_by), "items": described(req.items),
            "approved": described(req.approved), "can_receive": open_,
            "window_closed": req.status == "approved" and not open_}


@console.get("/console/requests/<request_id>")
def request_status(request_id: str) -> WResponse:
    services = _services()
    with services.db.session() as db:
        clerk = _clerk(db)
        if clerk is None:
            return _json_error(401, "unauthorised", "sign in to the console")
        req = db.get(ConsentRequest, request_id)
        if req is None or req.clerk_id != clerk.id:
            return _json_error(404, "not_found", "no such request")
        consent.expire_overdue(db, resident=req.resident)
        db.refresh(req)
        services.checkpoint_if_due(db)
        return _no_store(jsonify(_clerk_view(db, req)))


def _value_text(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


def _verified(db: Session, services: Services, released: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check each SD-JWT as the receiving system would, against the current trust list; values of what passes."""
    trust = current_trust_list(services.keyring, validity=services.settings.trust_validity)
    out = []
    for item in released:
        cert_type = db.get(CertType, item["type"])
        labels = _labels(cert_type)
        entry: dict[str, Any] = {"type": item["type"], "type_name": cert_type.name if cert_type else item["type"],
                                 "cert_id": item["cert_id"], "sd_jwt": item["sd_jwt"], "verified": False,
                                 "fields": []}
        try:
            token = verify_sd_jwt(item["sd_jwt"], trust)
        except SdJwtError as exc:
            entry["problem"] = str(exc)
            out.append(entry)
            continue
        if token.claims.get("type") != item["type"] or set(token.disclosed) != set(item["fields"]):
            entry["problem"] = "the signed certificate does not match what was approved"
            out.append(entry)
            continue
        department = db.get(Department, token.issuer)
        entry.update(
            verified=True, issuer=token.issuer, issuer_name=department.name if department else token.issuer,
            keep_until=dt.datetime.fromtimestamp(int(token.claims["exp"]), dt.UTC).isoformat(),
            fields=[{"name": name, "label": labels.get(name, {}).get("label", name),
                     "yesno": labels.get(name, {}).get("kind") == "predicate",
                     "value": token.disclosed[name], "text": _value_text(token.disclosed[name])}
                    for name in item["fields"]])
        out.append(entry)
    return out


@console.post("/console/requests/<request_id>/receive")
def receive(request_id: str) -> WResponse:
    services = _services()
    if not _csrf_header_ok():
        return _json_error(400, "csrf", f"send the page's token in {CSRF_HEADER}; reload the page")
    signed_in = _signed_in_clerk(services)
    if signed_in is None:
        return _json_error(401, "unauthorised", "sign in to the console")
    try:
        _within_rate(services, signed_in)
    except ConsentError as exc:
        return _json_error(exc.status, exc.reason, exc.message)
    with services.db.session() as db:
        clerk = _clerk(db)
        if clerk is None:
            return _json_error(401, "unauthorised", "sign in to the console")
        try:
            released = consent.fetch(db, services.keyring, clerk, request_id[:64])
        except ConsentError as exc:  # caught inside the transaction: the refusal stays logged
            if exc.reason == "not_found":  # fetch() logs every other refusal itself
                _log_refusal(db, clerk, action="fetch", reason="not_found", what=[{"request": request_id[:64]}])
            services.checkpoint_if_due(db)
            return _json_error(exc.status, exc.reason, exc.message)
        services.checkpoint_if_due(db)
        received = _verified(db, services, released)
    return _no_store(jsonify(id=request_id, status="fetched", received=received))


# -- the resident ----------------------------------------------------------------------------------
def _pid() -> str:
    pid = session.get("resident")
    assert isinstance(pid, str)  # login_required
    return pid


def _cards(db: Session, pid: str) -> list[dict[str, Any]]:
    cards = []
    now = _utcnow()
    for req in consent.pending_for(db, pid, now):
        described = consent.describe_request(db, req)
        for item in described["items"]:
            labels = _labels(db.get(CertType, item["type"]))
            for field in item["fields"]:
                field["yesno"] = labels.get(field["name"], {}).get("kind") == "predicate"
        described["keep_text"] = _keep_text(req.keep_minutes)
        described["seconds_left"] = max(0, int((_aware(req.answer_by) - now).total_seconds()))
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
        labels = _labels(cert_type)
        name = cert_type.name.split(" (")[0].lower() if cert_type else item["type"]
        shared.append(f"your {name} ({', '.join(labels.get(f, {}).get('label', f) for f in item['fields'])})")
    return f"You let {where} take {'; '.join(shared)} for {req.purpose}. They can take it once."


def _render_requests(db: Session, pid: str, *, error: str | None = None, status: int = 200) -> WResponse:
    answered = request.args.get("answered")
    notice = _answered_message(db, pid, answered) if answered else None
    cards = _cards(db, pid)
    _services().checkpoint_if_due(db)  # _cards may have expired requests (and logged that)
    return _page(render_template("requests.html", cards=cards, notice=notice, error=error), status)


@console.get("/requests")
@login_required
def requests_page() -> WResponse:
    with _services().db.session() as db:
        return _render_requests(db, _pid())


@console.get("/requests/pending")
def pending_json() -> WResponse:
    pid = session.get("resident")
    if not isinstance(pid, str) or not pid:
        return _json_error(401, "unauthorised", "sign in first")
    with _services().db.session() as db:
        cards = _cards(db, pid)
        _services().checkpoint_if_due(db)
        listed = [{"id": c["id"], "html": render_template("_request_card.html", r=c)} for c in cards]
    return _no_store(jsonify(requests=listed))


@console.post("/requests/<request_id>")
@login_required
def answer(request_id: str) -> WResponse:
    _check_csrf_form()
    decision = request.form.get("decision")
    pid = _pid()
    with _services().db.session() as db:
        approve: list[dict[str, Any]] | None = None
        try:
            if decision == "approve":
                chosen = _fields_from_form(request.form.getlist("fields"))
                if not chosen:
                    raise ConsentError("nothing_chosen", "Tick at least one item to share, or press Refuse.")
                approve = [{"type": t, "fields": names} for t, names in chosen.items()]
            elif decision != "refuse":
                raise ConsentError("invalid_body", "Choose Approve selected or Refuse.")
            consent.decide(db, pid, request_id, approve=approve,
                           fetch_minutes=_services().settings.consent_fetch_minutes)
            _services().checkpoint_if_due(db)
        except ConsentError as exc:
            message = exc.message if exc.reason != "not_pending" else \
                "That request is no longer waiting for an answer (it was answered or has expired)."
            return _render_requests(db, pid, error=message, status=exc.status)
    return redirect(url_for("console.requests_page", answered=request_id), 303)


@console.get("/history")
@login_required
def history_page() -> WResponse:
    pid = _pid()
    services = _services()
    with services.db.session() as db:
        entries = consent.history(db, pid)
        services.checkpoint_if_due(db)
    for entry in entries:
        # The sentence ends with the time of day; the page shows the date and time (city time) beside it.
        moment = consent.city_time(entry["at"])
        entry["text"] = entry["text"].removesuffix(", " + moment.strftime("%H:%M"))
        entry["city_at"] = moment.strftime("%Y-%m-%d %H:%M")
        entry["kind"] = ("refused" if "refused" in entry["outcome"] or entry["action"] == "refuse" else
                         "took" if entry["action"] == "fetch" else entry["action"])
    return _page(render_template("history.html", entries=entries))
