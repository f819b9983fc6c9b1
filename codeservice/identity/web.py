"""Pages for residents: sign-in (development or the city's identity platform) and the code page."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from codeservice.identity.oidc import OIDCClient, OIDCError, pkce_pair
from codeservice.identity.residents import add_resident, by_external_subject, get_resident, list_residents
from codeservice.identity.session import _signed_in, login_required
from codeservice.services import current_services

web = Blueprint("web", __name__)
log = logging.getLogger("citycode")

#: The sign-in page's errors by the code in its ``?error=``: a link cannot make the page say anything else.
SIGNIN_ERRORS = {
    "resident": lambda: _("No resident with that id."),
    "expired": lambda: _("Sign-in expired or was started elsewhere; try again."),
    "refused": lambda: _("The identity platform did not sign you in."),
    "platform": lambda: _("The identity platform could not be reached or did not answer as expected; try again."),
}


def _csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, "the form expired; reload the page and try again")


@web.app_context_processor
def _inject() -> dict[str, Any]:
    return {"csrf_token": _csrf_token}


def _oidc() -> OIDCClient | None:
    app = current_app
    settings = current_services(app).settings
    if settings.oidc is None:
        return None
    client = app.extensions.get("citycode_oidc")
    if client is None:
        client = app.extensions["citycode_oidc"] = OIDCClient(settings.oidc)
    return client  # type: ignore[no-any-return]


def _start_session(pid: str) -> None:
    session.clear()
    session["resident"] = pid
    session["csrf"] = secrets.token_urlsafe(24)


@web.get("/")
def index() -> Response:
    return redirect(url_for("web.code_page" if _signed_in() else "web.signin"))


@web.get("/signin")
def signin() -> str:
    services = current_services()
    demo = []
    if services.settings.dev_signin:
        with services.db.session() as db:
            demo = [(r.pid, r.display_name or r.pid) for r in list_residents(db, limit=20)]
    return render_template(
        "signin.html",
        dev_signin=services.settings.dev_signin,
        oidc=services.settings.oidc is not None,
        demo=demo,
        error=SIGNIN_ERRORS[error]() if (error := request.args.get("error")) in SIGNIN_ERRORS else None,
    )


@web.post("/signin/dev")
def signin_dev() -> Response:
    services = current_services()
    if not services.settings.dev_signin:
        abort(404)
    _check_csrf()
    pid = request.form.get("resident", "").strip()
    with services.db.session() as db:
        resident = get_resident(db, pid)
    if resident is None:
        return redirect(url_for("web.signin", error="resident"))
    _start_session(resident.pid)
    return redirect(url_for("web.code_page"))


@web.get("/signin/oidc")
def signin_oidc() -> Response:
    client = _oidc()
    if client is None:
        abort(404)
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    session["oidc"] = {"state": state, "nonce": nonce, "verifier": verifier}
    try:
        url = client.authorization_url(url_for("web.oidc_callback", _external=True), state, nonce, challenge)
    except OIDCError as exc:
        log.warning("identity platform unreachable at sign-in: %s", exc.__class__.__name__)
        return redirect(url_for("web.signin", error="platform"))
    return redirect(url)


@web.get("/oidc/callback")
def oidc_callback() -> Response:
    client = _oidc()
    if client is None:
        abort(404)
    pending = session.pop("oidc", None)
    state = request.args.get("state", "")
    if not isinstance(pending, dict) or not secrets.compare_digest(state, pending.get("state", "")):
        return redirect(url_for("web.signin", error="expired"))
    if "error" in request.args or "code" not in request.args:
        return redirect(url_for("web.signin", error="refused"))
    try:
        subject = client.exchange(
            request.args["code"], pending["verifier"], url_for("web.oidc_callback", _external=True), pending["nonce"]
        )
    except OIDCError as exc:
        log.warning("identity platform refused the sign-in: %s", exc.__class__.__name__)
        return redirect(url_for("web.signin", error="platform"))
    services = current_services()
    with services.db.session() as db:
        resident = by_external_subject(db, subject) or add_resident(db, external_subject=subject)
        pid = resident.pid
    _start_session(pid)
    return redirect(url_for("web.code_page"))


@web.post("/signout")
def signout() -> Response:
    _check_csrf()
    session.clear()
    return redirect(url_for("web.signin"))


@web.get("/code")
@login_required
def code_page() -> str:
    services = current_services()
    with services.db.session() as db:
        resident = get_resident(db, _signed_in() or "")
        name = resident.display_name if resident else None
    return render_template("code.html", name=name, lifetime=services.settings.code_lifetime)
