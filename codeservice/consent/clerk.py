"""Pages for the clerk at a service window: sign in, scan a code, ask for certificates, receive what was approved."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, abort, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WResponse

from codeservice.certificates.models import CertType, Department
from codeservice.certificates.service import disclosable
from codeservice.clients.models import ApiClient
from codeservice.clients.service import client_by_key
from codeservice.consent import service as consent
from codeservice.consent.models import ConsentRequest, Office
from codeservice.consent.pages import (
    CSRF_HEADER,
    MAX_FIELDS,
    aware,
    check_csrf_form,
    consent_message,
    csrf_header_ok,
    fields_from_form,
    html_page,
    iso,
    json_error,
    keep_text,
    labels_of,
    no_store,
    signed_in_clerk,
    start_session,
    utcnow,
)
from codeservice.consent.service import CodeRefused, ConsentError
from codeservice.i18n import reason_text
from codeservice.services import Services, current_services
from codeservice.state import StateError
from issuers.trustlist import current_trust_list
from sdk.sdjwt import SdJwtError, verify_sd_jwt

console = Blueprint("console", __name__)

#: The console's sign-in errors by the code in ``?error=``.
SIGNIN_ERRORS = {
    "key": lazy_gettext("That is not an active clerk’s API key."),
    "clerk": lazy_gettext("No such clerk."),
    "expired": lazy_gettext("Your console session ended; sign in again."),
}

MAX_KEY_CHARS = 200
KEEP_MINUTES = (15, 30, 60, 240, 1440)
DEFAULT_KEEP = 30


# -- helpers -------------------------------------------------------------------------------------

# -- the clerk -----------------------------------------------------------------------------------
def _to_signin() -> WResponse:
    session.pop("clerk", None)
    return redirect(url_for("console.signin"))


@console.get("/console/signin")
def signin() -> WResponse:
    services = current_services()
    clerks: list[dict[str, Any]] = []
    if services.settings.dev_signin:
        with services.db.session() as db:
            rows = db.execute(
                select(ApiClient, Office).join(Office, ApiClient.office_id == Office.id)
                .where(ApiClient.role == "clerk", ApiClient.active.is_(True))
                .order_by(Office.name, ApiClient.name).limit(50))
            clerks = [{"id": c.id, "name": c.name, "office": o.name} for c, o in rows]
    error = request.args.get("error")
    message = SIGNIN_ERRORS.get(error or "")
    return html_page(render_template("console_signin.html", dev_signin=services.settings.dev_signin, clerks=clerks,
                                     error=str(message) if message is not None else None))


@console.post("/console/signin/dev")
def signin_dev() -> WResponse:
    services = current_services()
    if not services.settings.dev_signin:
        abort(404)
    check_csrf_form()
    try:
        clerk_id = int(request.form.get("clerk", ""))
    except ValueError:
        clerk_id = 0
    with services.db.session() as db:
        client = db.get(ApiClient, clerk_id) if clerk_id > 0 else None
        ok = client is not None and client.active and client.role == "clerk" and bool(client.office_id)
    if not ok:
        return redirect(url_for("console.signin", error="clerk"))
    start_session("clerk", clerk_id)
    return redirect(url_for("console.console_page"))


@console.post("/console/signin/key")
def signin_key() -> WResponse:
    check_csrf_form()
    key = request.form.get("key", "").strip()
    services = current_services()
    with services.db.session() as db:
        client = client_by_key(db, key) if 0 < len(key) <= MAX_KEY_CHARS else None
        clerk_id = client.id if client is not None and client.role == "clerk" and client.office_id else None
    if clerk_id is None:
        return redirect(url_for("console.signin", error="key"))
    start_session("clerk", clerk_id)
    return redirect(url_for("console.console_page"))


@console.post("/console/signout")
def signout() -> WResponse:
    check_csrf_form()
    session.clear()
    return redirect(url_for("console.signin"))


def _purpose_groups(db: Session, office: Office) -> list[dict[str, Any]]:
    """Each purpose of the office with only what it may ask for: the types and fields the console offers."""
    groups = []
    for purpose in office.purposes:
        types = []
        for ask in consent.asks_of(office, purpose):
            cert_type = db.get(CertType, ask["type"])
            if cert_type is None:
                continue
            shown = {d["name"]: d for d in disclosable(cert_type)}
            fields = [shown[name] for name in ask["fields"] if name in shown]
            if fields:
                types.append({"code": ask["type"], "name": cert_type.name, "fields": fields})
        groups.append({"purpose": purpose, "types": types})
    return groups


def _render_console(db: Session, clerk: ApiClient, *, error: str | None = None, status: int = 200,
                    form: dict[str, Any] | None = None, shown: ConsentRequest | None = None) -> WResponse:
    office = db.get(Office, clerk.office_id)
    assert office is not None
    form = form or {}
    return html_page(render_template(
        "console.html", clerk=clerk.name, office=office.name, purposes=office.purposes,
        purpose_groups=_purpose_groups(db, office), keep_choices=[(m, keep_text(m)) for m in KEEP_MINUTES], error=error,
        chosen_purpose=form.get("purpose"), chosen_fields=set(form.get("fields", [])),
        chosen_keep=form.get("keep", DEFAULT_KEEP),
        shown=_clerk_view(db, shown) if shown is not None else None,
    ), status)


@console.get("/console")
def console_page() -> WResponse:
    services = current_services()
    with services.transaction() as db:
        clerk = signed_in_clerk(db)
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
        last = session.get("console_form")
        return _render_console(db, clerk, shown=shown, form=last if isinstance(last, dict) else None)


#: What the clerk does next when the resident's code was refused, by the verifier's reason.
_SCAN_AGAIN = lazy_gettext("Scan the code again, holding it steady in front of the scanner.")
_NOT_THE_CITYS = lazy_gettext(
    "Do not serve on this code: it is not signed by the city. Ask the resident to show the identity code of the "
    "city’s app; if it happens again, call a supervisor.")
CODE_NEXT_STEPS = {
    "expired": lazy_gettext("Ask the resident to open their code page again, so that it shows a fresh code, and "
                            "scan that."),
    "not_yet_valid": lazy_gettext("The phone’s clock (or this computer’s) is wrong. Ask the resident to set the "
                                  "phone’s time automatically, then scan again."),
    "not_a_citycode": lazy_gettext("That is not a city code. Ask the resident to open the city’s app and show "
                                   "the identity code."),
    "wrong_kind": lazy_gettext("That is not an identity code (a ride code or a certificate, perhaps). Ask the "
                               "resident to show the identity code."),
    "malformed": _SCAN_AGAIN, "no_code_found": _SCAN_AGAIN, "replayed": _SCAN_AGAIN,
    "bad_signature": _NOT_THE_CITYS, "unknown_key": _NOT_THE_CITYS, "untrusted_issuer": _NOT_THE_CITYS,
    "unsupported_alg": _NOT_THE_CITYS,
    "trust_list_expired": lazy_gettext("The service cannot check codes just now; wait a moment and scan again."),
    "replay_guard_unavailable": lazy_gettext(
        "The service cannot check codes just now; wait a moment and scan again."),
}


def _code_message(refusal: str) -> str:
    """What the clerk reads when the resident's code was refused: the reason and what to do next, in the clerk's
    language. What the clerk chose (purpose, fields, how long to keep) stays on the page."""
    if refusal.startswith("suspended"):
        return consent_message("identity_frozen", "")
    reason = refusal.split(":")[0]
    step = CODE_NEXT_STEPS.get(reason)
    return _("The code was not accepted: %(reason)s. %(next)s", reason=reason_text(reason),
             next=str(step) if step is not None else _("Ask the resident to show their code again, then scan it."))


def _signed_in_clerk(services: Services) -> ApiClient | None:
    with services.db.session() as db:
        clerk = signed_in_clerk(db)
        if clerk is not None:
            db.expunge(clerk)
        return clerk


@console.post("/console/requests")
def send_request() -> WResponse:
    check_csrf_form()
    services = current_services()
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
    chosen = fields_from_form(fields)
    error: ConsentError | None = None
    request_id = None
    try:
        if not code:
            raise ConsentError("no_code", consent_message("no_code", ""))
        _checked_rate(services, signed_in)
        if not chosen:
            raise ConsentError("invalid_body", consent_message("no_fields", ""))
        if keep not in KEEP_MINUTES:
            raise ConsentError("invalid_body", consent_message("no_keep", ""))
        request_id = services.consent.request(
            signed_in, code=code, purpose=purpose, keep_minutes=keep,
            items=[{"type": t, "fields": names} for t, names in chosen.items()]).id
    except CodeRefused as exc:
        error = ConsentError(exc.reason, _code_message(exc.refusal), exc.status)
    except ConsentError as exc:
        error = ConsentError(exc.reason, consent_message(exc.reason, exc.message), exc.status)
    if error is not None:
        with services.db.session() as db:
            clerk = signed_in_clerk(db)
            if clerk is None:
                return _to_signin()
            return _render_console(db, clerk, error=error.message, status=error.status, form=form)
    session["console_form"] = {"purpose": purpose, "fields": fields[:MAX_FIELDS], "keep": keep}  # the next resident
    return redirect(url_for("console.console_page", request=request_id), 303)


def _checked_rate(services: Services, clerk: ApiClient) -> None:
    """The clerk's allowance a minute, shared with the JSON API (same counter). Only sending and receiving
    count: the console's status polls do not."""
    try:
        services.consent.check_rate(clerk, method=request.method, path=request.path)
    except StateError:
        raise ConsentError("unavailable", consent_message("unavailable", ""), 503) from None


def _clerk_view(db: Session, req: ConsentRequest) -> dict[str, Any]:
    """A request as its clerk sees it: what was asked and approved (names only, never values)."""
    def described(items: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if items is None:
            return None
        out = []
        for item in items:
            cert_type = db.get(CertType, item["type"])
            labels = labels_of(cert_type)
            out.append({"type": item["type"], "type_name": cert_type.name if cert_type else item["type"],
                        "fields": [{"name": f, "label": labels.get(f, {}).get("label", f)} for f in item["fields"]]})
        return out

    now = utcnow()
    open_ = req.status == "approved" and req.fetch_by is not None and now <= aware(req.fetch_by)
    return {"id": req.id, "status": req.status, "purpose": req.purpose, "keep_minutes": req.keep_minutes,
            "keep_text": keep_text(req.keep_minutes), "created_at": iso(req.created_at),
            "answer_by": iso(req.answer_by), "fetch_by": iso(req.fetch_by), "items": described(req.items),
            "approved": described(req.approved), "can_receive": open_,
            "window_closed": req.status == "approved" and not open_}


@console.get("/console/requests/<request_id>")
def request_status(request_id: str) -> WResponse:
    services = current_services()
    clerk = _signed_in_clerk(services)
    if clerk is None:
        return json_error(401, "unauthorised", "sign in to the console")
    try:
        return no_store(jsonify(services.consent.clerk_request(clerk, request_id[:64], _clerk_view)))
    except ConsentError as exc:
        return json_error(exc.status, exc.reason, "no such request")


def _value_text(value: Any) -> str:
    if value is True:
        return _("yes")
    if value is False:
        return _("no")
    return str(value)


def _verified(db: Session, services: Services, released: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check each SD-JWT as the receiving system would, against the current trust list; values of what passes."""
    trust = current_trust_list(services.keyring, validity=services.settings.trust_validity)
    out = []
    for item in released:
        cert_type = db.get(CertType, item["type"])
        labels = labels_of(cert_type)
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
            entry["problem"] = _("the signed certificate does not match what was approved")
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
    services = current_services()
    if not csrf_header_ok():
        return json_error(400, "csrf", f"send the page's token in {CSRF_HEADER}; reload the page")
    clerk = _signed_in_clerk(services)
    if clerk is None:
        return json_error(401, "unauthorised", "sign in to the console")
    try:
        _checked_rate(services, clerk)
        released = services.consent.fetch(clerk, request_id[:64])
    except ConsentError as exc:
        return json_error(exc.status, exc.reason, consent_message(exc.reason, exc.message))
    with services.db.session() as db:
        received = _verified(db, services, released)
    return no_store(jsonify(id=request_id, status="fetched", received=received))
