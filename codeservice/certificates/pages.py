"""A resident's certificates: list them, choose fields, show a short-lived code (亮证).

JSON (session cookie of the signed-in resident, like GET /api/v1/me/code):

- ``GET /api/v1/me/certificates``: the resident's certificates with what each may disclose (labels, never values).
- ``POST /api/v1/me/certificates/<cert_id>/show`` ``{"fields": [...]}``: a show code carrying only those fields.

Pages: ``/certificates`` (the list) and ``/certificates/<cert_id>`` (choose, show; static/cert.js).

A certificate of someone else is answered exactly like one that does not exist (404), so that a resident
cannot probe for other people's certificates.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, session

from codeservice.certificates.models import Certificate, CertType, Department
from codeservice.certificates.service import CertificateError, certificates_of, disclosable, get_certificate, show_code
from codeservice.identity.session import login_required, signed_in_resident
from codeservice.jsonapi import UNPROCESSABLE, BadRequest, json_object, no_store
from codeservice.services import current_services
from issuers import render
from sdk.citytime import city_today

resident_certs = Blueprint("resident_certs", __name__)


# -- helpers -----------------------------------------------------------------------------------
def _effective_status(cert: Certificate, today: dt.date) -> str:
    """valid, suspended, revoked (as the department set it), or expired / not_yet_valid by the dates."""
    if cert.status != "valid":
        return cert.status
    if today < cert.valid_from:
        return "not_yet_valid"
    if today > cert.valid_until:
        return "expired"
    return "valid"


def _items(cert_type: CertType) -> list[dict[str, Any]]:
    """disclosable() plus, for a predicate, the field it is derived from (``derived_from``)."""
    sources = {p["name"]: p["field"] for p in cert_type.predicates}
    items = []
    for item in disclosable(cert_type):
        if item["kind"] == "predicate":
            item = {**item, "derived_from": sources.get(item["name"])}
        items.append(item)
    return items


def _describe(db: Any, cert: Certificate, today: dt.date) -> dict[str, Any]:
    cert_type = db.get(CertType, cert.type_code)
    department = db.get(Department, cert.department_id)
    assert cert_type is not None and department is not None
    return {
        "id": cert.id,
        "type": cert.type_code,
        "type_name": cert_type.name,
        "issuer": department.id,
        "issuer_name": department.name,
        "valid_from": cert.valid_from.isoformat(),
        "valid_until": cert.valid_until.isoformat(),
        "status": _effective_status(cert, today),
        "disclosable": _items(cert_type),
    }


def _own_certificate(db: Any, pid: str, cert_id: str) -> Certificate | None:
    """The resident's certificate, or None, whether it is someone else's, unknown or malformed."""
    try:
        cert = get_certificate(db, cert_id)
    except CertificateError:
        return None
    return cert if cert.holder == pid else None


def _chosen_fields() -> list[str]:
    fields = json_object()["fields"]  # ShowRequest: 1 to 64 field names (none: 400 no_fields)
    return list(dict.fromkeys(fields))


# -- JSON API ----------------------------------------------------------------------------------
@resident_certs.get("/api/v1/me/certificates")
def my_certificates() -> Response:
    services = current_services()
    today = city_today()
    with services.db.session() as db:
        pid = signed_in_resident(db)
        listed = [_describe(db, cert, today) for cert in certificates_of(db, pid)]
    return no_store(jsonify(certificates=listed))


@resident_certs.post("/api/v1/me/certificates/<cert_id>/show")
def show_certificate(cert_id: str) -> Response:
    services = current_services()
    lifetime = services.settings.code_lifetime
    with services.db.session() as db:
        pid = signed_in_resident(db)
        names = _chosen_fields()
        cert = _own_certificate(db, pid, cert_id)
        if cert is None:
            raise BadRequest("not_found", "you hold no certificate with that id", 404)
        state = _effective_status(cert, city_today())
        if state != "valid":
            raise BadRequest(f"certificate_{state}", f"this certificate is {state.replace('_', ' ')}", 409)
        cert_type = db.get(CertType, cert.type_code)
        assert cert_type is not None
        allowed = {item["name"] for item in disclosable(cert_type)}
        refused = [name for name in names if name not in allowed]
        if refused:
            raise BadRequest("not_disclosable", f"cannot show: {', '.join(refused)}", UNPROCESSABLE)
        now = time.time()
        try:
            code = show_code(db, services.keyring, cert, names, lifetime=lifetime, now=now)
        except CertificateError as exc:  # a status change between the checks above and here
            raise BadRequest("not_showable", str(exc), 409) from None
    margin = min(10, max(1, lifetime // 4))
    svg = render.svg(code)
    return no_store(
        jsonify(
            code=code,
            issued_at=int(now),
            expires_at=int(now) + lifetime,
            refresh_in=lifetime - margin,
            fields=names,
            svg="data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode(),
        )
    )


# -- pages -------------------------------------------------------------------------------------
def _signed_in_pid() -> str:
    pid = session.get("resident")
    assert isinstance(pid, str)  # login_required
    return pid


@resident_certs.get("/certificates")
@login_required
def certificates_page() -> Response:
    services = current_services()
    today = city_today()
    with services.db.session() as db:
        listed = [_describe(db, cert, today) for cert in certificates_of(db, _signed_in_pid())]
    return no_store(Response(render_template("certificates.html", certificates=listed)))


@resident_certs.get("/certificates/<cert_id>")
@login_required
def certificate_page(cert_id: str) -> Response:
    services = current_services()
    today = city_today()
    with services.db.session() as db:
        cert = _own_certificate(db, _signed_in_pid(), cert_id)
        if cert is None:
            abort(404)
        described = _describe(db, cert, today)
    return no_store(
        Response(
            render_template(
                "certificate.html",
                cert=described,
                groups=_groups(described["disclosable"]),
                lifetime=services.settings.code_lifetime,
            )
        )
    )


def _groups(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fields in order, each with the predicates derived from it; predicates of an undisclosable field alone."""
    fields = [i for i in items if i["kind"] == "field"]
    names = {f["name"] for f in fields}
    groups: list[dict[str, Any]] = [
        {"field": f, "predicates": [p for p in items if p.get("derived_from") == f["name"]]} for f in fields
    ]
    orphans = [p for p in items if p["kind"] == "predicate" and p.get("derived_from") not in names]
    if orphans:
        groups.append({"field": None, "predicates": orphans})
    return groups
