"""The resident's ride-code page (乘车码): the phone makes its device key, registers it, and signs codes itself."""

from __future__ import annotations

from flask import Blueprint, render_template

from codeservice.identity.session import login_required
from codeservice.services import current_services

rides = Blueprint("rides", __name__)


@rides.get("/rides")
@login_required
def rides_page() -> str:
    """The ride code: the page makes a device key, registers it, and signs codes itself, also offline."""
    settings = current_services().settings
    return render_template("rides.html", refresh=settings.ride_refresh, validity=settings.ride_code_validity)
