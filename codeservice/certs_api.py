"""Administration of departments, certificate types and certificates; yes/no checks (核验)."""

from __future__ import annotations

from flask import Blueprint

certs_api = Blueprint("certs_api", __name__, url_prefix="/api/v1")
