"""The consented pull over HTTP: clerks request and fetch, residents answer, kiosks hand out queue numbers."""

from __future__ import annotations

from flask import Blueprint

consent_api = Blueprint("consent_api", __name__, url_prefix="/api/v1")
