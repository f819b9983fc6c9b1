"""The Flask application factory."""

from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template, request
from flask_babel import lazy_gettext
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.wrappers import Response

from codeservice import contract, i18n
from codeservice.accesslog.api import audit_api
from codeservice.cards.api import cards_api
from codeservice.cards.pages import card_pages
from codeservice.certificates.api import certs_api
from codeservice.certificates.pages import resident_certs
from codeservice.config import Settings
from codeservice.consent.api import consent_api
from codeservice.consent.clerk import console
from codeservice.consent.resident import resident_requests
from codeservice.dashboard.api import dashboard_api
from codeservice.dashboard.pages import dashboard_pages
from codeservice.federation.api import federation_api
from codeservice.helpers.api import helpers_api
from codeservice.helpers.pages import helper_pages
from codeservice.identity.api import api
from codeservice.identity.web import web
from codeservice.jsonapi import BadRequest
from codeservice.services import Services
from codeservice.transit.api import transit_api
from codeservice.transit.pages import rides
from codeservice.venues.api import venues_api
from codeservice.venues.pages import venue_pages

log = logging.getLogger("citycode")


MAX_BODY_BYTES = 64 * 1024

#: Each domain's views: the JSON API under /api/v1 and the pages. Nothing imports this module back.
BLUEPRINTS = (api, certs_api, resident_certs, consent_api, audit_api, console, resident_requests, transit_api, rides,
              web, federation_api, cards_api, card_pages, helpers_api, helper_pages, venues_api, venue_pages,
              dashboard_api, dashboard_pages)


def create_app(settings: Settings | None = None, services: Services | None = None, *, initialise: bool = True) -> Flask:
    """Build the app. With ``initialise=False`` (every gunicorn worker) the data directory, schema and
    keys must already exist: ``citycode init`` makes them once, before the workers start, so that
    workers never race to migrate."""
    settings = settings or Settings.from_env()
    services = services or Services(settings)
    if initialise:
        services.initialise()
    elif not (settings.home / "secret_key").exists():
        raise RuntimeError(f"{settings.home} is not initialised; run 'citycode init' first")

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=services.secret_key(),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_NAME="citycode_session",
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["citycode"] = services

    app.extensions["citycode_contract"] = contract.compiled()  # once per process (codeservice/contract.py)

    i18n.init_app(app, settings)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)

    @app.errorhandler(BadRequest)
    def _refusal(exc: BadRequest):  # type: ignore[no-untyped-def]
        response = jsonify(error=exc.reason, message=exc.message)
        response.status_code = exc.status
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        if request.path.startswith("/api/"):
            response = jsonify(error=_error_code(exc.code or 500), message=exc.description)
            response.status_code = exc.code or 500
            allow = exc.get_response().headers.get("Allow")
            if allow:
                response.headers["Allow"] = allow
            return response
        return _error_page(exc.code or 500, exc.get_response().headers.get("Allow"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.error("unhandled %s on %s %s", exc.__class__.__name__, request.method, request.path)
        if not request.path.startswith("/api/"):
            return _error_page(500)
        response = jsonify(error="internal_error", message="internal error; the event was logged")
        response.status_code = 500
        return response

    app.before_request(contract.find_operation)  # first: the operation's body limit (1 MiB for gate records)

    @app.before_request
    def _whole_body_or_413() -> None:
        # A chunked body has no Content-Length: Werkzeug then stops reading at MAX_CONTENT_LENGTH and hands
        # on a truncated body (a 2 MB JSON body would read as "not valid JSON", a form as a shorter form).
        # Read it here, once (it stays cached for the view), and refuse it whole as a body with a length is.
        chunked = request.content_length is None and request.environ.get("wsgi.input_terminated")
        if chunked and len(request.get_data(cache=True)) >= (request.max_content_length or MAX_BODY_BYTES):
            raise RequestEntityTooLarge()

    app.before_request(contract.check_public_request)  # then the document's check of a request needing no key

    # One pooled connection a request, whatever number of transactions it commits one after another: one
    # checkout, one liveness ping and one reset instead of one each a transaction (codeservice/db.py).
    @app.before_request
    def _database_scope() -> None:
        g.citycode_db_scope = services.db.open_scope()

    @app.teardown_request
    def _end_database_scope(_exc: BaseException | None) -> None:
        token = g.pop("citycode_db_scope", None)
        if token is not None:
            services.db.close_scope(token)
    app.after_request(contract.check_response)  # only when app.testing

    @app.after_request
    def _headers(response):  # type: ignore[no-untyped-def]
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'",
        )
        return response

    return app


#: What a page's error says, in the reader's language (the JSON API keeps its codes and English messages).
ERROR_PAGES = {
    400: (lazy_gettext("Something in the request was wrong"),
          lazy_gettext("The form may have expired. Go back, reload the page and try again.")),
    403: (lazy_gettext("Not allowed"), lazy_gettext("This page is not open to you.")),
    404: (lazy_gettext("Page not found"),
          lazy_gettext("There is no page at this address. Check the address, or start again from the home page.")),
    405: (lazy_gettext("Not possible this way"),
          lazy_gettext("This address cannot be used like that. Start again from the home page.")),
    413: (lazy_gettext("Too much at once"), lazy_gettext("What was sent is too large. Send less and try again.")),
    500: (lazy_gettext("Something went wrong on our side"),
          lazy_gettext("The service could not finish this. Please try again in a moment.")),
}


def _error_page(status: int, allow: str | None = None) -> Response:
    """A styled page in the reader's language with a way back; a bare text if even that cannot be drawn."""
    title, message = ERROR_PAGES.get(status, ERROR_PAGES[500] if status >= 500 else ERROR_PAGES[400])
    try:
        body = render_template("error.html", status=status, title=title, message=message)
    except Exception as exc:  # a broken template must not hide the first error
        log.error("error page %s not drawn: %s", status, exc.__class__.__name__)
        body, mimetype = f"{status}", "text/plain"
    else:
        mimetype = "text/html"
    response = Response(body, status=status, mimetype=mimetype)
    response.headers["Cache-Control"] = "no-store"
    if allow:
        response.headers["Allow"] = allow
    return response


def _error_code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorised",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "body_too_large",
        415: "unsupported_media_type",
    }.get(status, "error")
