"""A resident's certificates: list them, choose fields, show a short-lived code (亮证)."""

from __future__ import annotations

from flask import Blueprint

resident_certs = Blueprint("resident_certs", __name__)
