"""Pages of family helpers: the resident names and ends helpers (``/helpers``); a helper acts for the person
(``/helping/<pid>``: their code, their pending requests, approve or refuse)."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response as WResponse

from codeservice.consent import service as consent
from codeservice.consent.pages import check_csrf_form, html_page
from codeservice.consent.service import ConsentError
from codeservice.helpers import service as helpers
from codeservice.helpers.api import end_of_day
from codeservice.identity.session import login_required
from codeservice.services import current_services
from issuers import render

helper_pages = Blueprint("helpers", __name__)

HELPER_MESSAGES = {
    "not_found": lazy_gettext("There is no resident with that id."),
    "invalid_helper": lazy_gettext("You cannot be your own helper."),
    "invalid_until": lazy_gettext("Choose a last day from tomorrow to a year ahead."),
    "helper_exists": lazy_gettext("That person already helps you. End it first to change the date."),
    "not_helper": lazy_gettext("You are not a helper of this person."),
    "helper_expired": lazy_gettext("Your help for this person has passed its last day. They can name you again."),
    "helper_revoked": lazy_gettext("This person has ended your help."),
    "helper_is_beneficiary": lazy_gettext("This request is for your own benefit: only the person can approve it."),
    "identity_frozen": lazy_gettext("This person’s identity is frozen."),
    "not_pending": lazy_gettext("That request is no longer waiting for an answer (it was answered or has expired)."),
}
STATES = {"active": lazy_gettext("active"), "expired": lazy_gettext("past its last day"),
          "ended": lazy_gettext("ended")}


def _message(exc: ConsentError) -> str:
    text = HELPER_MESSAGES.get(exc.reason)
    return str(text) if text is not None else exc.message


def _pid() -> str:
    pid = session.get("resident")
    assert isinstance(pid, str)  # login_required
    return pid


def _grants(pid: str) -> dict[str, list[dict[str, Any]]]:
    with current_services().db.session() as db:
        mine = [helpers.grant_json(db, g) for g in helpers.grants_of(db, pid)]
        theirs = [helpers.grant_json(db, g) for g in helpers.helping(db, pid)]
    for grant in (*mine, *theirs):
        grant["state_text"] = str(STATES[grant["status"]])
    return {"mine": mine, "theirs": theirs}


def _helpers_page(pid: str, *, error: str | None = None, status: int = 200) -> WResponse:
    return html_page(render_template("helpers.html", error=error, **_grants(pid)), status)


@helper_pages.get("/helpers")
@login_required
def helpers_page() -> WResponse:
    return _helpers_page(_pid())


@helper_pages.post("/helpers")
@login_required
def add_helper() -> WResponse:
    check_csrf_form()
    pid = _pid()
    try:
        day = dt.date.fromisoformat(request.form.get("until", ""))
    except ValueError:
        return _helpers_page(pid, error=str(HELPER_MESSAGES["invalid_until"]), status=400)
    try:
        with current_services().transaction() as db:
            helpers.add_helper(db, pid, request.form.get("helper", "").strip()[:64], end_of_day(day))
    except ConsentError as exc:
        return _helpers_page(pid, error=_message(exc), status=exc.status)
    return redirect(url_for("helpers.helpers_page"), 303)


@helper_pages.post("/helpers/<grant_id>/end")
@login_required
def end_helper(grant_id: str) -> WResponse:
    check_csrf_form()
    pid = _pid()
    try:
        with current_services().transaction() as db:
            helpers.end_helper(db, pid, grant_id[:32])
    except ConsentError as exc:
        return _helpers_page(pid, error=_message(exc), status=exc.status)
    return redirect(url_for("helpers.helpers_page"), 303)


def _helping_page(helper: str, resident: str, *, error: str | None = None, status: int = 200) -> WResponse:
    services = current_services()
    try:
        code = helpers.code_for(services, helper, resident)
        pending = helpers.pending_for(services, helper, resident,
                                      lambda db, found: [consent.describe_request(db, r) for r in found])
    except ConsentError as exc:
        return html_page(render_template("helping.html", refused=_message(exc), resident=resident), exc.status)
    with services.db.session() as db:
        name = helpers._name(db, resident)
    image = "data:image/svg+xml;base64," + base64.b64encode(render.svg(code).encode()).decode()
    return html_page(render_template("helping.html", resident=resident, name=name, image=image, requests=pending,
                                     error=error), status)


@helper_pages.get("/helping/<resident>")
@login_required
def helping_page(resident: str) -> WResponse:
    return _helping_page(_pid(), resident[:64])


@helper_pages.post("/helping/<resident>/requests/<request_id>")
@login_required
def answer_for(resident: str, request_id: str) -> WResponse:
    check_csrf_form()
    helper, resident = _pid(), resident[:64]
    decision = request.form.get("decision")
    try:
        helpers.answer_for(current_services(), helper, resident, request_id[:64], None, lambda _db, _r: None,
                           everything=decision == "approve")
    except ConsentError as exc:
        return _helping_page(helper, resident, error=_message(exc), status=exc.status)
    return redirect(url_for("helpers.helping_page", resident=resident), 303)
