"""The dashboards' pages: ``/operator`` (an operator's key) and ``/city`` (an auditor's key, the data office).

Each signs in with its client key on its own sign-in page (``/operator/sign-in``, ``/city/sign-in``), as the
clerk's console does (a form with the page's CSRF token; the session keeps the client's id, never the key). The
page's script fetches its figures from page-only JSON routes (``/operator/data/<part>``, ``/city/data/<part>``)
that accept the signed-in session and call the same ``operator_figures`` and ``city_figures`` as the
``/api/v1/dashboard/`` endpoints: one source of figures. The operator is always the signed-in key's own, taken
from the session: no URL or parameter names one.

``?screen=1`` (or ``/operator/screen``, ``/city/screen``) is the full-screen mode (大屏): dark, large type,
refreshing its data every ``refresh`` seconds (default 30) without reloading. Printing uses the print
stylesheet (``static/dashboard.css``): each chart as a static image, no navigation, A4.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from werkzeug.wrappers import Response as WResponse

from codeservice.clients.models import ApiClient
from codeservice.clients.service import client_by_key
from codeservice.consent.pages import check_csrf_form, html_page, json_error, no_store, start_session
from codeservice.dashboard import service as figures
from codeservice.dashboard.api import city_figures, operator_figures, the_day
from codeservice.i18n import REASON_TEXT
from codeservice.jsonapi import BadRequest
from codeservice.services import current_services
from codeservice.transit.clearing import csv_rows, trips_of_day
from codeservice.transit.models import ClearingStatement, Operator
from sdk.citytime import city_today, service_day

dashboard_pages = Blueprint("dashboard_pages", __name__)

MAX_KEY_CHARS = 200
#: The full-screen mode's refresh: ``?refresh=N`` seconds, within these bounds.
REFRESH_DEFAULT, REFRESH_MIN, REFRESH_MAX = 30, 2, 3600
#: The session's key for each dashboard (the signed-in client's id) and the role its key must have.
ROLES = {"operator": "operator", "city": "auditor"}
OPERATOR_PARTS = ("day", "gates", "clearing")
CITY_PARTS = ("day", "state", "points")

SIGNIN_ERRORS = {
    "operator": {
        "key": lazy_gettext("That is not an active operator’s API key."),
        "expired": lazy_gettext("Your dashboard session ended; sign in again."),
    },
    "city": {
        "key": lazy_gettext("That is not an active auditor’s API key of the data office."),
        "expired": lazy_gettext("Your dashboard session ended; sign in again."),
    },
}

#: Card types as the pages name them (``sdk.claims.CARD_TYPES``; ``unknown`` for a record without one).
CARD_TYPE_TEXT = {
    "adult": lazy_gettext("adult"),
    "student": lazy_gettext("student"),
    "elderly": lazy_gettext("elderly"),
    "disabled": lazy_gettext("disabled"),
    "unknown": lazy_gettext("card type unknown"),
}
#: A consent request's outcome (``ConsentRequest.status``).
CONSENT_STATUS_TEXT = {
    "pending": lazy_gettext("waiting for an answer"),
    "approved": lazy_gettext("approved"),
    "refused": lazy_gettext("refused"),
    "expired": lazy_gettext("expired"),
    "fetched": lazy_gettext("received by the office"),
}


def _labels() -> dict[str, Any]:
    """What the page's script writes on its charts, in the reader's language."""
    return {
        "reasons": {reason.value: str(text) for reason, text in REASON_TEXT.items()},
        "card_types": {code: str(text) for code, text in CARD_TYPE_TEXT.items()},
        "consent": {code: str(text) for code, text in CONSENT_STATUS_TEXT.items()},
        "taps": _("Taps"), "trips": _("Trips"), "hour": _("Hour"), "day": _("Day"),
        "previous_week": _("Same day a week before"), "week_average": _("Average of the week before"),
        "station": _("Station"), "line": _("Line"), "card_type": _("Card type"), "reason": _("Reason"),
        "yes": _("yes"), "no": _("no"), "checks": _("Checks"), "requests": _("Requests"), "office": _("Office"),
        "outcome": _("Outcome"), "entries": _("Entries"), "department": _("Department"),
        "shows": _("Certificate shows"), "pulls": _("Consented pulls"), "point": _("Service point"),
        "uses": _("Uses"), "list": _("Status list"), "allocated": _("Allocated"), "suspended": _("Suspended"),
        "revoked": _("Revoked"), "none": _("No figures for this day."),
        "offline": _("offline"), "late": _("late records"), "ok": _("reporting"),
        "due": _("rotation due"), "not_due": _("not due"),
        "audit_ok": _("the log verified"), "audit_failed": _("the log did not verify"),
        "not_available": _("Not available yet: the service does not report this figure."),
        "refreshed": _("Last refresh"), "load_failed": _("The figures could not be loaded; retrying."),
        "quota": _("Quota per person a day"), "overdraws": _("Overdraws found after upload"),
        "total": _("Total"), "audit_none": _("No audit run recorded yet."),
        "ttl": _("Lists are re-signed every"), "validity": _("each valid for"),
    }


def _signed_in(kind: str) -> ApiClient | None:
    """The client signed in on this dashboard, if its key is still active with the right role (operators: of
    an operator)."""
    client_id = session.get(f"dash_{kind}")
    if type(client_id) is not int:
        return None
    with current_services().db.session() as db:
        client = db.get(ApiClient, client_id)
        if client is None or not client.active or client.role != ROLES[kind]:
            return None
        if kind == "operator" and not client.operator_id:
            return None
        db.expunge(client)
        return client


def _signin_page(kind: str) -> WResponse:
    error = request.args.get("error", "")
    message = SIGNIN_ERRORS[kind].get(error)
    return html_page(render_template("dashboard_signin.html", kind=kind,
                                     error=str(message) if message is not None else None))


def _signin(kind: str) -> WResponse:
    check_csrf_form()
    key = request.form.get("key", "").strip()
    with current_services().db.session() as db:
        client = client_by_key(db, key) if 0 < len(key) <= MAX_KEY_CHARS else None
        ok = client is not None and client.role == ROLES[kind] and (kind != "operator" or bool(client.operator_id))
        client_id = client.id if client is not None and ok else None
    if client_id is None:
        return redirect(url_for(f"dashboard_pages.{kind}_signin", error="key"))
    start_session(f"dash_{kind}", client_id)
    return redirect(url_for(f"dashboard_pages.{kind}_page"))


def _signout(kind: str) -> WResponse:
    check_csrf_form()
    session.clear()
    return redirect(url_for(f"dashboard_pages.{kind}_signin"))


def _refresh() -> int:
    try:
        seconds = int(request.args.get("refresh", REFRESH_DEFAULT))
    except ValueError:
        seconds = REFRESH_DEFAULT
    return min(max(seconds, REFRESH_MIN), REFRESH_MAX)


def _page(kind: str, screen: bool) -> WResponse:
    client = _signed_in(kind)
    if client is None:
        session.pop(f"dash_{kind}", None)
        return redirect(url_for(f"dashboard_pages.{kind}_signin"))
    screen = screen or request.args.get("screen") == "1"
    owner = ""
    if kind == "operator":
        with current_services().db.session() as db:
            operator = db.get(Operator, client.operator_id)
            owner = operator.name if operator is not None else str(client.operator_id)
        default_day = service_day(time.time())
    else:
        owner = client.name
        default_day = city_today().isoformat()
    return html_page(render_template(
        "dashboard.html", kind=kind, screen=screen, refresh=_refresh(), owner=owner, client_name=client.name,
        default_day=default_day, labels=_labels(),
        data_url=url_for(f"dashboard_pages.{kind}_data", part="PART"),
    ))


def _data(kind: str, part: str) -> WResponse:
    client = _signed_in(kind)
    if client is None:
        return json_error(401, "unauthorised", "sign in on the dashboard first")
    services = current_services()
    if kind == "operator":
        if part not in OPERATOR_PARTS:
            return json_error(404, "not_found", "no such figure")
        against = request.args.get("against", "last_week")
        if against not in figures.AGAINST:
            raise BadRequest("invalid_against", f"against: one of {', '.join(figures.AGAINST)}", 400)
        body = operator_figures(services, part, client.operator_id, the_day(request.args.get("day")), against)
        if part == "clearing" and body.get("statement"):
            body["statement"]["page_csv_url"] = url_for("dashboard_pages.operator_csv", day=body["service_day"])
        return no_store(jsonify(body))
    if part not in CITY_PARTS:
        return json_error(404, "not_found", "no such figure")
    day = the_day(request.args.get("day")) if part != "state" else None
    return no_store(jsonify(city_figures(services, part, day)))


# -- the operator ------------------------------------------------------------------------------------------
@dashboard_pages.get("/operator/sign-in")
def operator_signin() -> WResponse:
    return _signin_page("operator")


@dashboard_pages.post("/operator/sign-in")
def operator_signin_key() -> WResponse:
    return _signin("operator")


@dashboard_pages.post("/operator/sign-out")
def operator_signout() -> WResponse:
    return _signout("operator")


@dashboard_pages.get("/operator")
def operator_page() -> WResponse:
    return _page("operator", screen=False)


@dashboard_pages.get("/operator/screen")
def operator_screen() -> WResponse:
    return _page("operator", screen=True)


@dashboard_pages.get("/operator/data/<part>")
def operator_data(part: str) -> WResponse:
    return _data("operator", part)


@dashboard_pages.get("/operator/clearing.csv")
def operator_csv() -> WResponse:
    """The day's clearing CSV of the signed-in operator (the same text as the API's ``trips.csv``)."""
    client = _signed_in("operator")
    if client is None or client.operator_id is None:
        return json_error(401, "unauthorised", "sign in on the dashboard first")
    day = the_day(request.args.get("day"))
    with current_services().db.session() as db:
        if db.get(ClearingStatement, (client.operator_id, day)) is None:
            return json_error(404, "not_cleared", "this day has no clearing statement")
        text = "".join(csv_rows(client.operator_id, day, trips_of_day(db, client.operator_id, day)))
    response = WResponse(text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{client.operator_id}-{day.isoformat()}-trips.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the city's data office ----------------------------------------------------------------------------------
@dashboard_pages.get("/city/sign-in")
def city_signin() -> WResponse:
    return _signin_page("city")


@dashboard_pages.post("/city/sign-in")
def city_signin_key() -> WResponse:
    return _signin("city")


@dashboard_pages.post("/city/sign-out")
def city_signout() -> WResponse:
    return _signout("city")


@dashboard_pages.get("/city")
def city_page() -> WResponse:
    return _page("city", screen=False)


@dashboard_pages.get("/city/screen")
def city_screen() -> WResponse:
    return _page("city", screen=True)


@dashboard_pages.get("/city/data/<part>")
def city_data(part: str) -> WResponse:
    return _data("city", part)
