"""Federation over HTTP: the signed statement a gate fetches with its trust list, and the inter-city settlement
statement (admin key)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from codeservice.clients.auth import require_client
from codeservice.errors import NotFound
from codeservice.federation import settlement
from codeservice.federation.service import statement_token
from codeservice.jsonapi import BadRequest, no_store
from codeservice.services import current_services
from codeservice.transit.clearing import parse_day

federation_api = Blueprint("federation_api", __name__, url_prefix="/api/v1")


@federation_api.get("/federation")
def federation_statement() -> Response:
    """This city's federation statement (federation+jwt), signed by its trust anchor."""
    services = current_services()
    with services.db.session() as session:
        token = statement_token(session, services.keyring, city=services.settings.city,
                                validity=services.settings.trust_validity)
    response = Response(token, mimetype="application/federation+jwt")
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@federation_api.get("/federation/settlements/<city>/<day>")
@require_client("admin")
def settlement_statement(city: str, day: str) -> Response:
    """The inter-city statement of *day* with *city*, as last computed here (``citycode federation visits``,
    ``import`` and ``statement``): both directions in integer cents, the CSV and its SHA-256."""
    moment = parse_day(day)
    if moment is None:  # the document's pattern takes 2026-02-30 too
        raise BadRequest("invalid_day", "the day is YYYY-MM-DD (an operating day, 04:00 to 04:00 city time)")
    services = current_services()
    try:
        with services.db.session() as session:
            out = settlement.statement(session, own_city=services.settings.city, other_city=city, day=moment)
    except NotFound:
        raise BadRequest("not_found", f"no federated city {city!r}", 404) from None
    return no_store(jsonify(out))
