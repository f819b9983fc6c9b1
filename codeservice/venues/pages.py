"""The resident's check-in page (扫码登记): scan a venue's posted code with the camera (or paste its text), see
what will be recorded and for how long, confirm; and the resident's own check-ins."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template, request, session
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response as WResponse

from codeservice.consent.pages import check_csrf_form, html_page
from codeservice.identity.residents import frozen_or_none
from codeservice.identity.session import login_required
from codeservice.services import current_services
from codeservice.venues.service import (
    CodeRefused,
    check_venue_code,
    checkin_json,
    checkins_of,
    purge_checkins,
    record_checkin,
)

venue_pages = Blueprint("venues", __name__)

#: Why a scanned venue code is refused, as the resident reads it (the API's stable reasons).
REFUSALS = {
    "not_a_citycode": lazy_gettext("This is not a venue code of the city."),
    "malformed": lazy_gettext("This code is damaged or not a venue code of the city."),
    "bad_signature": lazy_gettext("This venue code is forged: its signature does not match. Do not check in here."),
    "unknown_key": lazy_gettext("This venue code was not signed by the city. Do not check in here."),
    "untrusted_issuer": lazy_gettext("This venue code was not signed by the city. Do not check in here."),
    "unsupported_alg": lazy_gettext("This venue code was not signed by the city. Do not check in here."),
    "expired": lazy_gettext("This venue code has expired. Ask the venue for its new code."),
    "not_yet_valid": lazy_gettext("This venue code is not valid yet. Check the time on your phone."),
    "revoked": lazy_gettext("This venue's code has been withdrawn by the city. Nothing was recorded."),
    "wrong_kind": lazy_gettext("This is not a venue code. Scan the code the venue has posted."),
    "unknown_venue": lazy_gettext("The city knows no such venue. Nothing was recorded."),
    "trust_list_expired": lazy_gettext("The city's keys could not be checked. Try again in a moment."),
    "status_unknown": lazy_gettext("Whether this venue code is still valid could not be checked. Try again."),
    "status_stale": lazy_gettext("Whether this venue code is still valid could not be checked. Try again."),
}
DEFAULT_REFUSAL = lazy_gettext("This venue code was not accepted. Nothing was recorded.")


def refusal_text(reason: str) -> str:
    return str(REFUSALS.get(reason, DEFAULT_REFUSAL))


def _pid() -> str:
    return str(session["resident"])


def _page(status: int = 200, **context: Any) -> WResponse:
    services = current_services()
    with services.db.session() as db:
        mine = [checkin_json(c, name) for c, name in checkins_of(db, _pid())]
    return html_page(render_template("checkin.html", checkins=mine,
                                     retention_days=services.settings.checkin_retention_days, **context), status)


def _frozen() -> WResponse | None:
    with current_services().db.session() as db:
        if frozen_or_none(db, _pid()) is not False:
            return _page(403, error=str(lazy_gettext("Your identity is frozen; nothing can be recorded.")))
    return None


@venue_pages.get("/checkin")
@login_required
def checkin_page() -> WResponse:
    return _page()


@venue_pages.post("/checkin")
@login_required
def checkin_preview() -> WResponse:
    """A scanned or pasted code: the venue it names and what will be recorded, to confirm (nothing recorded yet)."""
    check_csrf_form()
    frozen = _frozen()
    if frozen is not None:
        return frozen
    code = request.form.get("code", "").strip()
    services = current_services()
    s = services.settings
    with services.db.session() as db:
        try:
            venue = check_venue_code(db, services.keyring, code, leeway=s.leeway, trust_validity=s.trust_validity)
        except CodeRefused as exc:
            return _page(422, error=refusal_text(exc.reason), reason=exc.reason)
        name = venue.name
    return _page(preview={"venue": name, "code": code})


@venue_pages.post("/checkin/confirm")
@login_required
def checkin_confirm() -> WResponse:
    check_csrf_form()
    frozen = _frozen()
    if frozen is not None:
        return frozen
    if request.form.get("consent") != "yes":
        return _page(422, error=str(lazy_gettext("Nothing was recorded: you did not confirm.")))
    services = current_services()
    s = services.settings
    with services.db.session() as db:
        try:
            venue = check_venue_code(db, services.keyring, request.form.get("code", "").strip(), leeway=s.leeway,
                                     trust_validity=s.trust_validity)
        except CodeRefused as exc:
            return _page(422, error=refusal_text(exc.reason), reason=exc.reason)
        purge_checkins(db)
        record_checkin(db, venue, _pid(), retention_days=s.checkin_retention_days)
        name = venue.name
    return _page(done=name)
