"""Administration of departments, certificate types and certificates; yes/no checks (核验).

Admin endpoints need an ``admin`` API key, ``/checks`` a ``verifier`` key (see codeservice/auth.py).
Every refusal is JSON ``{error, message}``:

* 400 ``invalid_body`` (not an object, a member missing or of the wrong type, unknown members),
  ``invalid_value`` (a value the registry refuses: org code, field value, holder, ...),
  ``unknown_department`` / ``unknown_type`` / ``unknown_holder`` (the body names nothing we hold),
  ``invalid_identifier`` (a certificate id that is not GB/T 36904 or has a wrong check character),
  ``code_refused`` (a scanned code that does not verify, with the reason; logged), ``invalid_subject``;
* 403 ``forbidden`` (a verifier asking beyond what it is allowed; no check is made, the attempt is in the
  access log as a refused ``check``, about the code's resident or company when its signature verifies);
* 404 ``not_found`` (the certificate or resident in the path); 409 ``conflict``; 415 from the JSON parser.

A yes/no check answers only ``answer``, ``receipt_id`` and ``receipt`` (a JWS signed by the
``city-checks`` issuer, whose key is in the trust list): no field value of any certificate leaves
the service.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import jwt
from flask import Blueprint, Response, g, jsonify
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from codeservice.accesslog import service as accesslog
from codeservice.certificates.models import Certificate, CertType, Department
from codeservice.certificates.service import (
    STATUS_VALUES,
    CertificateError,
    NotFound,
    add_cert_type,
    add_department,
    check,
    get_certificate,
    issue_certificate,
    set_status,
    subject_kind,
)
from codeservice.clients.auth import require_client
from codeservice.clients.models import ApiClient
from codeservice.identity.residents import get_resident
from codeservice.jsonapi import BadRequest, json_body, text
from codeservice.services import CHECKS_OFFICE, current_services
from sdk.certid import CertificateId, IdentifierError
from sdk.keys import b64u_encode

certs_api = Blueprint("certs_api", __name__, url_prefix="/api/v1")

RECEIPT_TYPE = "checkreceipt+jwt"


# -- request parsing ---------------------------------------------------------------------------
def _text(data: dict[str, Any], name: str, max_length: int, *, optional: bool = False) -> str | None:
    if optional and data.get(name) is None:
        return None
    return text(data, name, max_length)


def _certificate_id(cert_id: str) -> str:
    try:
        CertificateId.parse(cert_id)
    except IdentifierError as exc:
        raise BadRequest("invalid_identifier", f"certificate id: {exc}") from None
    return cert_id


# -- JSON forms ----------------------------------------------------------------------------------
def department_json(department: Department) -> dict[str, Any]:
    return {"id": department.id, "name": department.name, "org_code": department.org_code}


def cert_type_json(cert_type: CertType) -> dict[str, Any]:
    return {"code": cert_type.code, "name": cert_type.name, "department": cert_type.department_id,
            "holder_kind": cert_type.holder_kind, "fields": cert_type.fields, "predicates": cert_type.predicates,
            "validity_days": cert_type.validity_days}


def certificate_json(cert: Certificate) -> dict[str, Any]:
    return {"id": cert.id, "type": cert.type_code, "department": cert.department_id, "number": cert.number,
            "holder": cert.holder, "holder_kind": cert.holder_kind, "issued_on": cert.issued_on.isoformat(),
            "valid_from": cert.valid_from.isoformat(), "valid_until": cert.valid_until.isoformat(),
            "status": cert.status, "fields": cert.fields}


# -- departments and types -----------------------------------------------------------------------
@certs_api.post("/admin/departments")
@require_client("admin")
def create_department() -> tuple[Response, int]:
    body = json_body({"id", "name", "org_code"})
    dept_id = _text(body, "id", 64)
    name = _text(body, "name", 200)
    org_code = _text(body, "org_code", 18)
    assert dept_id is not None and name is not None and org_code is not None
    services = current_services()
    if dept_id in services.keyring.issuers():
        # A department is an issuer: it must not take over the keys of another (city-id, city-checks).
        raise BadRequest("conflict", f"issuer {dept_id!r} exists already", 409)
    try:
        with services.db.session() as session:
            if session.get(Department, dept_id) is not None:
                raise BadRequest("conflict", f"department {dept_id!r} exists already", 409)
            if session.scalars(select(Department).where(Department.org_code == org_code)).first() is not None:
                raise BadRequest("conflict", f"org code {org_code} belongs to another department", 409)
            department = add_department(session, services.keyring, dept_id, name, org_code)
            out = department_json(department)
    except CertificateError as exc:
        raise BadRequest("invalid_value", str(exc)) from None
    except IntegrityError:
        raise BadRequest("conflict", "the department or its org code exists already", 409) from None
    return jsonify(out), 201


@certs_api.post("/admin/cert-types")
@require_client("admin")
def create_cert_type() -> tuple[Response, int]:
    body = json_body({"code", "name", "department", "holder_kind", "fields"}, {"predicates", "validity_days"})
    code = _text(body, "code", 32)
    name = _text(body, "name", 200)
    department = _text(body, "department", 64)
    holder_kind = _text(body, "holder_kind", 16)
    assert code is not None and name is not None and department is not None and holder_kind is not None
    fields = body["fields"]
    predicates = body.get("predicates")
    if predicates is None:
        predicates = []
    validity_days = body.get("validity_days", 365)
    if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
        raise BadRequest("invalid_body", "'fields' must be a list of objects {name, label?, type?, disclosable?}")
    for spec in fields:
        if "disclosable" in spec and not isinstance(spec["disclosable"], bool):
            raise BadRequest("invalid_body", "a field's 'disclosable' must be true or false")
        label = spec.get("label")
        if label is not None and (not isinstance(label, str) or len(label) > 200):
            raise BadRequest("invalid_body", "a field's 'label' must be a string of at most 200 characters")
    if not isinstance(predicates, list) or not all(isinstance(p, dict) for p in predicates):
        raise BadRequest("invalid_body", "'predicates' must be a list of objects {field, op, value, name?, label?}")
    for spec in predicates:
        for member in ("name", "label"):
            value = spec.get(member)
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise BadRequest("invalid_body", f"a predicate's '{member}' must be a string")
    if type(validity_days) is not int:
        raise BadRequest("invalid_body", "'validity_days' must be a whole number")
    services = current_services()
    try:
        with services.db.session() as session:
            if session.get(CertType, code) is not None:
                raise BadRequest("conflict", f"certificate type {code} exists already", 409)
            if session.get(Department, department) is None:
                raise BadRequest("unknown_department", f"no department {department!r}")
            cert_type = add_cert_type(session, services.keyring, code=code, name=name, department=department,
                                      holder_kind=holder_kind, fields=fields, predicates=predicates,
                                      validity_days=validity_days)
            out = cert_type_json(cert_type)
    except CertificateError as exc:
        raise BadRequest("invalid_value", str(exc)) from None
    except IntegrityError:
        raise BadRequest("conflict", f"certificate type {code} exists already", 409) from None
    return jsonify(out), 201


# -- certificates ----------------------------------------------------------------------------------
@certs_api.post("/admin/certificates")
@require_client("admin")
def create_certificate() -> tuple[Response, int]:
    body = json_body({"type", "holder", "fields"}, {"number"})
    type_code = _text(body, "type", 32)
    holder = _text(body, "holder", 64)
    number = _text(body, "number", 64, optional=True)
    assert type_code is not None and holder is not None
    fields = body["fields"]
    if not isinstance(fields, dict):
        raise BadRequest("invalid_body", "'fields' must be an object {name: value}")
    for name, value in fields.items():
        # Floats would be truncated silently into whole-number fields; null, lists and objects are no values.
        if isinstance(value, float) or not isinstance(value, str | int):
            raise BadRequest("invalid_value", f"field {name}: a string, a whole number or true/false")
    services = current_services()
    try:
        with services.db.session() as session:
            if session.get(CertType, type_code) is None:
                raise BadRequest("unknown_type", f"no certificate type {type_code!r}")
            try:
                cert = issue_certificate(session, type_code=type_code, holder=holder, fields=fields, number=number,
                                         status_list_size=services.settings.status_list_size)
            except NotFound as exc:  # the type exists: the resident named as holder does not
                raise BadRequest("unknown_holder", str(exc)) from None
            out = certificate_json(cert)
    except CertificateError as exc:
        raise BadRequest("invalid_value", str(exc)) from None
    return jsonify(out), 201


@certs_api.get("/admin/certificates/<cert_id>")
@require_client("admin")
def show_certificate(cert_id: str) -> Response:
    cert_id = _certificate_id(cert_id)
    with current_services().db.session() as session:
        try:
            cert = get_certificate(session, cert_id)
        except NotFound as exc:
            raise BadRequest("not_found", str(exc), 404) from None
        return jsonify(certificate_json(cert))


@certs_api.post("/admin/certificates/<cert_id>/status")
@require_client("admin")
def change_status(cert_id: str) -> Response:
    cert_id = _certificate_id(cert_id)
    body = json_body({"status"})
    status = body["status"]
    if not isinstance(status, str) or status not in STATUS_VALUES:
        raise BadRequest("invalid_body", "'status' must be valid, suspended or revoked")
    with current_services().db.session() as session:
        try:
            cert = get_certificate(session, cert_id)
        except NotFound as exc:
            raise BadRequest("not_found", str(exc), 404) from None
        if cert.status == "revoked" and status != "revoked":
            raise BadRequest("conflict", "a revoked certificate is revoked for good; issue a new one", 409)
        try:
            cert = set_status(session, cert_id, status)
        except CertificateError as exc:
            raise BadRequest("invalid_value", str(exc)) from None
        return jsonify(certificate_json(cert))


# -- yes/no checks -----------------------------------------------------------------------------------
class _CodeRefused(BadRequest):
    """A scanned code that does not verify, or names a frozen or unknown resident; ``subject`` whom it names
    (when its signature verified), for the access log."""

    def __init__(self, message: str, subject: str | None) -> None:
        super().__init__("code_refused", message)
        self.subject = subject


def _subject_from_code(code: str) -> str:
    """The resident named by a scanned identity code, or the company holding a shown certificate."""
    services = current_services()
    result = services.online.verify(code, None)
    if not result.accepted:
        detail = f": {result.detail}" if result.detail else ""
        raise _CodeRefused(f"{result.reason.value}{detail}", result.subject if result.kind == "id" else None)
    if result.kind == "id" and result.subject is not None:
        with services.db.session() as session:
            resident = get_resident(session, result.subject)
            if resident is None or resident.frozen:
                reason = "identity frozen" if resident is not None else "no such resident"
                raise _CodeRefused(f"suspended: {reason}", result.subject)
        return result.subject
    if result.kind == "cert" and result.holder is not None:
        try:
            kind = subject_kind(result.holder)
        except CertificateError:
            kind = None
        if kind == "company":
            return result.holder
        raise BadRequest("invalid_subject", "a resident is identified by a scanned identity code")
    raise BadRequest("invalid_subject", f"a {result.kind} code names no one to check")


def _named_subject(body: dict[str, Any]) -> str | None:
    """Whom a check beyond the verifier's allowance was about, for the log only (the answer is 403 whatever
    this finds): the resident of an identity code, or the company of a certificate code, whose signature
    verifies; or a company's code sent as ``subject``. None when nobody is named for certain."""
    code, subject = body.get("code"), body.get("subject")
    if isinstance(code, str):
        result = current_services().online.verify(code, None)
        if result.kind == "id":
            return result.subject
        return result.holder if result.kind == "cert" and result.accepted else None
    if isinstance(subject, str):
        try:
            return subject if subject_kind(subject) == "company" else None
        except CertificateError:
            return None
    return None


def _log_check_refusal(client: ApiClient, subject: str | None, type_code: str, predicate: str | None,
                       reason: str) -> None:
    """A refused yes/no check, in the access log (its own transaction: the refusal is kept)."""
    services = current_services()
    with services.transaction() as session:
        accesslog.append(session, actor=f"{client.role}:{client.id}", actor_label=client.name,
                         office=client.office_id, subject=subject, action="check",
                         what=[{"type": type_code[:32], "fields": [predicate[:64]] if predicate else []}],
                         purpose=None, outcome=f"refused: {reason}"[:64])


@certs_api.post("/checks")
@require_client("verifier")
def yes_no_check() -> Response:
    body = json_body({"type"}, {"code", "subject", "predicate"})
    type_code = body["type"]
    predicate = body.get("predicate")
    if not isinstance(type_code, str) or not type_code:
        raise BadRequest("invalid_body", "'type' must be a certificate type code")
    if predicate is not None and (not isinstance(predicate, str) or not predicate):
        raise BadRequest("invalid_body", "'predicate' must be a string or null")
    if ("code" in body) == ("subject" in body):
        raise BadRequest("invalid_body", "send either 'code' (a scanned citycode) or 'subject' (a company's code)")
    client = g.client
    # Authorisation first: an unauthorised verifier learns nothing, not even whether the code verifies.
    # The attempt is logged, about whom it was when that is known.
    if type_code not in client.allowed_types:
        _log_check_refusal(client, _named_subject(body), type_code, predicate, "type_not_allowed")
        raise BadRequest("forbidden", f"not allowed to ask about {type_code}", 403)
    if predicate is not None and predicate not in client.allowed_predicates:
        _log_check_refusal(client, _named_subject(body), type_code, predicate, "predicate_not_allowed")
        raise BadRequest("forbidden", f"not allowed to ask about {predicate}", 403)
    if "code" in body:
        code = body["code"]
        if not isinstance(code, str):
            raise BadRequest("invalid_body", "'code' must be a string")
        try:
            subject = _subject_from_code(code)
        except _CodeRefused as exc:
            _log_check_refusal(client, exc.subject, type_code, predicate, f"code {exc.message}")
            raise
    else:
        subject = body["subject"]
        if not isinstance(subject, str):
            raise BadRequest("invalid_body", "'subject' must be a string")
        try:
            kind = subject_kind(subject)
        except CertificateError as exc:
            raise BadRequest("invalid_subject", str(exc)) from None
        if kind != "company":
            raise BadRequest("invalid_subject", "a resident is identified only by a scanned identity code")
    services = current_services()
    now = dt.datetime.now(dt.UTC)
    try:
        with services.transaction() as session:
            record = check(session, client, subject=subject, type_code=type_code, predicate=predicate, now=now)
            receipt_id, answer = record.receipt_id, record.answer
    except PermissionError as exc:
        _log_check_refusal(client, subject, type_code, predicate, "forbidden")
        raise BadRequest("forbidden", str(exc), 403) from None
    except NotFound as exc:
        _log_check_refusal(client, subject, type_code, predicate, "unknown_type")
        raise BadRequest("unknown_type", str(exc)) from None
    except CertificateError as exc:
        _log_check_refusal(client, subject, type_code, predicate, "invalid_value")
        raise BadRequest("invalid_value", str(exc)) from None
    signer = services.keyring.signer(CHECKS_OFFICE.id)
    claims = {"iss": CHECKS_OFFICE.id, "jti": receipt_id, "iat": int(now.timestamp()), "sub": subject,
              "type": type_code, "predicate": predicate, "answer": answer, "verifier": client.name}
    receipt = jwt.encode(claims, signer.private_key, algorithm="ES256",
                         headers={"typ": RECEIPT_TYPE, "kid": b64u_encode(signer.kid)})
    response = jsonify(answer=answer, receipt_id=receipt_id, receipt=receipt)
    response.headers["Cache-Control"] = "no-store"
    return response


@certs_api.get("/status/<department>")
def status_list(department: str) -> Response:
    """The department's current Token Status List (statuslist+jwt)."""

    services = current_services()
    try:
        if "\x00" in department:  # no issuer id has one, and PostgreSQL cannot compare text with it
            raise NotFound(department)
        with services.db.session() as session:
            token = services.status_list(session, department)
    except NotFound:
        raise BadRequest("not_found", f"no department {department!r}", 404) from None
    response = Response(token, mimetype="application/statuslist+jwt")
    response.headers["Cache-Control"] = f"public, max-age={services.settings.status_ttl}"
    return response

