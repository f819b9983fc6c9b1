"""Federation over HTTP: the signed statement a gate fetches with its trust list."""

from __future__ import annotations

from flask import Blueprint, Response

from codeservice.federation.service import statement_token
from codeservice.services import current_services

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
