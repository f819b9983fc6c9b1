"""Administration of departments, certificate types and certificates; yes/no checks (核验).

Admin endpoints need an ``admin`` API key, ``/checks`` a ``verifier`` key (see codeservice/auth.py).
Every refusal is JSON ``{error, message}``:

* 400 for what the document refuses (codeservice/contract.py, before the view): ``invalid_body`` (a member
  missing, unknown, of the wrong type or out of bounds), ``invalid_value`` (the form of an id, org code or type
  code), ``invalid_identifier`` (not the form of a GB/T 36904 identifier);
* 422 for a request of the documented shape that cannot be carried out: ``invalid_value`` (a value the registry
  refuses: an org code's check character, a field value, a field the type lacks, ...),
  ``unknown_department`` / ``unknown_type`` / ``unknown_holder`` (the body names nothing we hold),
  ``invalid_identifier`` (a wrong check character), ``code_refused`` (a scanned code that does not verify, with
  the reason; logged), ``invalid_subject``;
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
from codeservice.accesslog.ratelimit import limit_verifier
from codeservice.certificates.models import Certificate, CertType, Department
from codeservice.certificates.service import (
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
from codeservice.contract import check_request
from codeservice.identity.residents import get_resident
from codeservice.jsonapi import UNPROCESSABLE, BadRequest, json_object
from codeservice.services import CHECKS_OFFICE, current_services
from sdk.certid import CertificateId, IdentifierError
from sdk.keys import b64u_encode

certs_api = Blueprint("certs_api", __name__, url_prefix="/api/v1")

RECEIPT_TYPE = "checkreceipt+jwt"


# -- request parsing (the shapes are the document's, checked by codeservice/contract.py) ---------------------
def _certificate_id(cert_id: str) -> str:
    """The document states the form of an identifier (400); its check character is checked here (422)."""
    try:
        CertificateId.parse(cert_id)
    except IdentifierError as exc:
        raise BadRequest("invalid_identifier", f"certificate id: {exc}", UNPROCESSABLE) from None
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
    body = json_object()
    dept_id, name, org_code = body["id"], body["name"], body["org_code"]
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
    except CertificateError as exc:  # the org code's check character
        raise BadRequest("invalid_value", str(exc), UNPROCESSABLE) from None
    except IntegrityError:
        raise BadRequest("conflict", "the department or its org code exists already", 409) from None
    return jsonify(out), 201


@certs_api.post("/admin/cert-types")
@require_client("admin")
def create_cert_type() -> tuple[Response, int]:
    body = json_object()
    code, name, department, holder_kind = body["code"], body["name"], body["department"], body["holder_kind"]
    fields, predicates = body["fields"], body.get("predicates") or []
    validity_days = body.get("validity_days", 365)
    services = current_services()
    try:
        with services.db.session() as session:
            if session.get(CertType, code) is not None:
                raise BadRequest("conflict", f"certificate type {code} exists already", 409)
            if session.get(Department, department) is None:
                raise BadRequest("unknown_department", f"no department {department!r}", UNPROCESSABLE)
            cert_type = add_cert_type(session, services.keyring, code=code, name=name, department=department,
                                      holder_kind=holder_kind, fields=fields, predicates=predicates,
                                      validity_days=validity_days)
            out = cert_type_json(cert_type)
    except CertificateError as exc:  # a field named twice, a predicate on no date field of the type
        raise BadRequest("invalid_value", str(exc), UNPROCESSABLE) from None
    except IntegrityError:
        raise BadRequest("conflict", f"certificate type {code} exists already", 409) from None
    return jsonify(out), 201


# -- certificates ----------------------------------------------------------------------------------
@certs_api.post("/admin/certificates")
@require_client("admin")
def create_certificate() -> tuple[Response, int]:
    body = json_object()
    type_code, holder, fields, number = body["type"], body["holder"], body["fields"], body.get("number")
    services = current_services()
    try:
        with services.db.session() as session:
            if session.get(CertType, type_code) is None:
                raise BadRequest("unknown_type", f"no certificate type {type_code!r}", UNPROCESSABLE)
            try:
                cert = issue_certificate(session, type_code=type_code, holder=holder, fields=fields, number=number,
                                         status_list_size=services.settings.status_list_size)
            except NotFound as exc:  # the type exists: the resident named as holder does not
                raise BadRequest("unknown_holder", str(exc), UNPROCESSABLE) from None
            out = certificate_json(cert)
    except CertificateError as exc:  # a field the type does not have or lacks, a value of the wrong kind
        raise BadRequest("invalid_value", str(exc), UNPROCESSABLE) from None
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
    status = json_object()["status"]  # CertificateStatusChange: valid, suspended or revoked
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
            raise BadRequest("invalid_value", str(exc), UNPROCESSABLE) from None
        return jsonify(certificate_json(cert))


# -- yes/no checks -----------------------------------------------------------------------------------
class _CodeRefused(BadRequest):
    """A scanned code that does not verify, or names a frozen or unknown resident; ``subject`` whom it names
    (when its signature verified), for the access log."""

    def __init__(self, message: str, subject: str | None) -> None:
        super().__init__("code_refused", message, UNPROCESSABLE)
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
        raise BadRequest("invalid_subject", "a resident is identified by a scanned identity code", UNPROCESSABLE)
    raise BadRequest("invalid_subject", f"a {result.kind} code names no one to check", UNPROCESSABLE)


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
                       reason: str, purpose: str | None = None) -> None:
    """A refused yes/no check, in the access log (its own transaction: the refusal is kept)."""
    services = current_services()
    with services.transaction() as session:
        accesslog.append(session, actor=f"{client.role}:{client.id}", actor_label=client.name,
                         office=client.office_id, subject=subject, action="check",
                         what=[{"type": type_code[:32], "fields": [predicate[:64]] if predicate else []}],
                         purpose=purpose[:300] if purpose else None, outcome=f"refused: {reason}"[:64])


@certs_api.post("/checks")
@require_client("verifier", check=False)
def yes_no_check() -> Response:
    client = g.client
    limit_verifier(client)  # before the document's check: a malformed request counts too
    check_request()
    body = json_object()  # CheckRequest: a type, a predicate or none, a purpose, and either a code or a subject
    type_code = body["type"]
    predicate = body.get("predicate")
    purpose = body["purpose"]
    # Authorisation first: an unauthorised verifier learns nothing, not even whether the code verifies.
    # The attempt is logged, about whom it was when that is known.
    if type_code not in client.allowed_types:
        _log_check_refusal(client, _named_subject(body), type_code, predicate, "type_not_allowed", purpose)
        raise BadRequest("forbidden", f"not allowed to ask about {type_code}", 403)
    if predicate is not None and predicate not in client.allowed_predicates:
        _log_check_refusal(client, _named_subject(body), type_code, predicate, "predicate_not_allowed", purpose)
        raise BadRequest("forbidden", f"not allowed to ask about {predicate}", 403)
    if "code" in body:
        try:
            subject = _subject_from_code(body["code"])
        except _CodeRefused as exc:
            _log_check_refusal(client, exc.subject, type_code, predicate, f"code {exc.message}", purpose)
            raise
    else:
        subject = body["subject"]
        try:
            kind = subject_kind(subject)
        except CertificateError as exc:  # the check character of a unified social credit code
            raise BadRequest("invalid_subject", str(exc), UNPROCESSABLE) from None
        if kind != "company":
            raise BadRequest("invalid_subject", "a resident is identified only by a scanned identity code",
                             UNPROCESSABLE)
    services = current_services()
    now = dt.datetime.now(dt.UTC)
    try:
        with services.transaction() as session:
            record = check(session, client, subject=subject, type_code=type_code, predicate=predicate, now=now,
                           purpose=purpose)
            receipt_id, answer = record.receipt_id, record.answer
    except PermissionError as exc:
        _log_check_refusal(client, subject, type_code, predicate, "forbidden", purpose)
        raise BadRequest("forbidden", str(exc), 403) from None
    except NotFound as exc:
        _log_check_refusal(client, subject, type_code, predicate, "unknown_type", purpose)
        raise BadRequest("unknown_type", str(exc), UNPROCESSABLE) from None
    except CertificateError as exc:
        _log_check_refusal(client, subject, type_code, predicate, "invalid_value", purpose)
        raise BadRequest("invalid_value", str(exc), UNPROCESSABLE) from None
    signer = services.keyring.signer(CHECKS_OFFICE.id)
    claims = {"iss": CHECKS_OFFICE.id, "jti": receipt_id, "iat": int(now.timestamp()), "sub": subject,
              "type": type_code, "predicate": predicate, "purpose": purpose, "answer": answer, "verifier": client.name}
    receipt = jwt.encode(claims, signer.private_key, algorithm=signer.alg_name,  # type: ignore[arg-type]
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

