"""Departments, certificate types, certificates, their status lists, show codes and yes/no checks."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from codeservice import errors
from codeservice.accesslog import service as accesslog
from codeservice.certificates.models import Certificate, CertType, CheckRecord, Department
from codeservice.clients.models import ApiClient
from codeservice.errors import Refused
from codeservice.identity.models import Resident
from issuers.certificates import issue_show_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from sdk.certid import CertificateId, IdentifierError, validate_uscc
from sdk.citytime import CITY_TZ, age_on, city_today
from sdk.claims import subject_from_text
from sdk.statuslist import INVALID, SUSPENDED

FIELD_TYPES = ("text", "date", "int", "bool")
HOLDER_KINDS = ("resident", "company")


STATUS_VALUES = {"valid": 0, "revoked": INVALID, "suspended": SUSPENDED}
#: A status list grown past CITYCODE_STATUS_LIST_SIZE (lowered below an allocated index) grows in these steps.
LIST_SIZE_STEP = 1024
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SLUG = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
_TYPE_CODE = re.compile(r"^[0-9A-Z]{2,32}$")


class CertificateError(Refused):
    """A request the certificate registry cannot carry out; the message says why."""


class NotFound(CertificateError, errors.NotFound):
    """A department, type, certificate or holder that does not exist."""


# -- departments and types ---------------------------------------------------------------------
def add_department(session: Session, keyring: Keyring, dept_id: str, name: str, org_code: str) -> Department:
    if not _SLUG.match(dept_id or ""):
        raise CertificateError("department id: 2-64 lowercase letters, digits and dashes, starting with a letter")
    if not name or len(name) > 200:
        raise CertificateError("department name: 1 to 200 characters")
    try:
        validate_uscc(org_code)
    except IdentifierError as exc:
        raise CertificateError(f"org code: {exc}") from None
    if session.get(Department, dept_id) is not None or dept_id in keyring.issuers():
        raise CertificateError(f"department or issuer {dept_id!r} exists already")
    if session.scalars(select(Department).where(Department.org_code == org_code)).first() is not None:
        raise CertificateError(f"org code {org_code} belongs to another department")
    department = Department(id=dept_id, name=name, org_code=org_code)
    session.add(department)
    session.flush()
    keyring.add_issuer(IssuerInfo(dept_id, name, ("cert",), org_code=org_code))
    return department


def record_org_codes(session: Session, keyring: Keyring) -> list[str]:
    """Write every department's organisation code into the keyring (published in the trust list, where a
    gate checks it against the issuer code of each certificate identifier). A keyring made before it held
    org codes heals here. The ids of the departments whose code was written."""
    known = keyring.issuers()
    return [department.id for department in session.scalars(select(Department).order_by(Department.id))
            if department.id in known and keyring.set_org_code(department.id, department.org_code)]


def _validate_field_specs(fields: Any, predicates: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(fields, list) or not fields:
        raise CertificateError("a certificate type declares at least one field")
    names: set[str] = set()
    clean_fields = []
    for spec in fields:
        if not isinstance(spec, Mapping):
            raise CertificateError("each field is an object with name, type and disclosable")
        name, ftype = spec.get("name"), spec.get("type", "text")
        if not isinstance(name, str) or not _NAME.match(name) or name in names:
            raise CertificateError(f"field name {name!r}: lowercase letters, digits, underscores; unique")
        if ftype not in FIELD_TYPES:
            raise CertificateError(f"field {name}: type must be one of {', '.join(FIELD_TYPES)}")
        names.add(name)
        clean_fields.append({"name": name, "label": str(spec.get("label") or name), "type": ftype,
                             "disclosable": bool(spec.get("disclosable", True))})
    clean_predicates = []
    for spec in predicates or []:
        if not isinstance(spec, Mapping):
            raise CertificateError("each predicate is an object")
        field, value = spec.get("field"), spec.get("value")
        source = next((f for f in clean_fields if f["name"] == field), None)
        if spec.get("op") != "age_over" or source is None or source["type"] != "date":
            raise CertificateError("a predicate is age_over N on a date field of the type")
        if type(value) is not int or not 0 < value < 150:
            raise CertificateError("age_over needs a whole number of years")
        name = spec.get("name") or f"age_over_{value}"
        if not _NAME.match(name) or name in names:
            raise CertificateError(f"predicate name {name!r} is taken or invalid")
        names.add(name)
        clean_predicates.append({"name": name, "field": field, "op": "age_over", "value": value,
                                 "label": str(spec.get("label") or f"{value} or older")})
    return clean_fields, clean_predicates


def add_cert_type(
    session: Session, keyring: Keyring, *, code: str, name: str, department: str, holder_kind: str,
    fields: Any, predicates: Any = (), validity_days: int = 365,
) -> CertType:
    if not _TYPE_CODE.match(code or ""):
        raise CertificateError("type code: 2-32 characters 0-9 or A-Z")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise CertificateError("type name: 1 to 200 characters")
    if session.get(CertType, code) is not None:
        raise CertificateError(f"certificate type {code} exists already")
    if session.get(Department, department) is None:
        raise NotFound(f"no department {department!r}")
    if holder_kind not in HOLDER_KINDS:
        raise CertificateError("holder kind must be resident or company")
    if type(validity_days) is not int or not 1 <= validity_days <= 36500:
        raise CertificateError("validity days: 1 to 36500")
    clean_fields, clean_predicates = _validate_field_specs(fields, list(predicates or []))
    cert_type = CertType(code=code, name=name, department_id=department, holder_kind=holder_kind,
                         fields=clean_fields, predicates=clean_predicates, validity_days=validity_days)
    session.add(cert_type)
    session.flush()
    keyring.allow_cert_type(department, code)
    return cert_type


# -- certificates ------------------------------------------------------------------------------
def _coerce(spec: Mapping[str, Any], raw: Any) -> str | int | bool:
    name, ftype = spec["name"], spec["type"]
    if ftype == "int":
        if isinstance(raw, (bool, float)):
            raise CertificateError(f"field {name}: a whole number")
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise CertificateError(f"field {name}: a whole number") from None
    if ftype == "bool":
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "yes", "1"):
            return True
        if str(raw).lower() in ("false", "no", "0"):
            return False
        raise CertificateError(f"field {name}: true or false")
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 500:
        raise CertificateError(f"field {name}: 1 to 500 characters of text")
    if ftype == "date":
        try:
            return dt.date.fromisoformat(raw).isoformat()
        except ValueError:
            raise CertificateError(f"field {name}: a date YYYY-MM-DD") from None
    return raw.strip()


def _allocate_index(session: Session, department: str, size: int) -> int:
    used = set(session.scalars(select(Certificate.status_index).where(Certificate.department_id == department)))
    if len(used) >= size * 0.9:
        raise CertificateError(f"status list of {department} is full; raise CITYCODE_STATUS_LIST_SIZE")
    while True:
        index = secrets.randbelow(size)
        if index not in used:
            return index


def issue_certificate(
    session: Session, *, type_code: str, holder: str, fields: Mapping[str, Any], status_list_size: int,
    number: str | None = None, valid_from: dt.date | None = None, today: dt.date | None = None,
) -> Certificate:
    cert_type = session.get(CertType, type_code)
    if cert_type is None:
        raise NotFound(f"no certificate type {type_code!r}")
    department = session.get(Department, cert_type.department_id)
    assert department is not None
    if cert_type.holder_kind == "resident":
        if session.scalars(select(Resident).where(Resident.pid == holder)).first() is None:
            raise NotFound(f"no resident {holder!r}")
    else:
        try:
            validate_uscc(holder)
        except IdentifierError as exc:
            raise CertificateError(f"holder: {exc}") from None
    specs = {f["name"]: f for f in cert_type.fields}
    unknown = set(fields) - set(specs)
    if unknown:
        raise CertificateError(f"unknown fields for {type_code}: {', '.join(sorted(unknown))}")
    missing = set(specs) - set(fields)
    if missing:
        raise CertificateError(f"missing fields for {type_code}: {', '.join(sorted(missing))}")
    values = {name: _coerce(specs[name], raw) for name, raw in fields.items()}
    if number is not None and (not isinstance(number, str) or not 0 < len(number) <= 64):
        raise CertificateError("certificate number: 1 to 64 characters")
    today = today or city_today()
    start = valid_from or today
    for _ in range(5):
        serial = (session.scalar(select(func.count()).select_from(Certificate)
                                 .where(Certificate.type_code == type_code)) or 0) + 1
        ident = CertificateId.build(type_code, department.org_code, f"{serial:08d}", 1)
        cert = Certificate(
            id=str(ident), type_code=type_code, department_id=department.id,
            number=number or f"{type_code}{today:%Y}{serial:08d}", holder=holder, holder_kind=cert_type.holder_kind,
            issued_on=today, valid_from=start, valid_until=start + dt.timedelta(days=cert_type.validity_days),
            fields=values, status="valid", status_index=_allocate_index(session, department.id, status_list_size),
        )
        try:
            with session.begin_nested():
                session.add(cert)
                session.flush()
            return cert
        except IntegrityError:
            continue  # a concurrent issue took the serial or the index: try again
    raise CertificateError("could not allocate a certificate identifier; try again")


def get_certificate(session: Session, cert_id: str) -> Certificate:
    try:
        CertificateId.parse(cert_id)
    except IdentifierError as exc:
        raise CertificateError(f"certificate id: {exc}") from None
    cert = session.get(Certificate, cert_id)
    if cert is None:
        raise NotFound(f"no certificate {cert_id}")
    return cert


def set_status(session: Session, cert_id: str, status: str) -> Certificate:
    """suspend, reinstate (valid) or revoke; a revoked certificate stays revoked."""
    if status not in STATUS_VALUES:
        raise CertificateError("status must be valid, suspended or revoked")
    cert = get_certificate(session, cert_id)
    if cert.status == "revoked" and status != "revoked":
        raise CertificateError("a revoked certificate cannot be reinstated or suspended")
    cert.status = status
    return cert


def certificates_of(session: Session, holder: str) -> list[Certificate]:
    return list(session.scalars(select(Certificate).where(Certificate.holder == holder).order_by(Certificate.id)))


def covering_size(size: int, highest: int | None) -> int:
    """*size*, or, when the highest index already allocated is not below it (the setting was lowered), that
    index plus one rounded up to a multiple of 1024: indices are never reused, so no entry is dropped."""
    if highest is None or highest < size:
        return size
    return -(-(highest + 1) // LIST_SIZE_STEP) * LIST_SIZE_STEP


def status_list_token(
    session: Session, keyring: Keyring, department: str, *, size: int, uri: str, ttl: int, validity: int,
    now: float | None = None,
) -> str:
    """The department's current status list, of *size* entries or, when *size* (CITYCODE_STATUS_LIST_SIZE)
    was lowered below an index already allocated, of enough to hold every allocated index: the highest
    plus one, rounded up to a multiple of 1024. Indices are never reused, so no certificate loses its entry."""
    if session.get(Department, department) is None:
        raise NotFound(f"no department {department!r}")
    highest = session.scalar(select(func.max(Certificate.status_index)).where(Certificate.department_id == department))
    size = covering_size(size, highest)
    rows = session.execute(select(Certificate.status_index, Certificate.status)
                           .where(Certificate.department_id == department, Certificate.status != "valid"))
    statuses = {index: STATUS_VALUES[status] for index, status in rows}
    return sign_status_list(keyring.signer(department), statuses, size=size, uri=uri, ttl=ttl, validity=validity,
                            now=now)


def disclosable(cert_type: CertType) -> list[dict[str, Any]]:
    """What a holder may choose to show: disclosable fields and derived predicates."""
    items = [{"name": f["name"], "label": f["label"], "kind": "field"} for f in cert_type.fields if f["disclosable"]]
    items += [{"name": p["name"], "label": p["label"], "kind": "predicate"} for p in cert_type.predicates]
    return items


def disclosed_values(cert: Certificate, cert_type: CertType, names: Iterable[str], today: dt.date) -> dict[str, Any]:
    chosen = list(dict.fromkeys(names))
    allowed = {item["name"] for item in disclosable(cert_type)}
    refused = [n for n in chosen if n not in allowed]
    if refused:
        raise CertificateError(f"cannot disclose: {', '.join(refused)}")
    predicates = {p["name"]: p for p in cert_type.predicates}
    values: dict[str, Any] = {}
    for name in chosen:
        if name in predicates:
            rule = predicates[name]
            values[name] = age_on(dt.date.fromisoformat(cert.fields[rule["field"]]), today) >= rule["value"]
        else:
            values[name] = cert.fields[name]
    return values


def _epoch(day: dt.date, end: bool = False) -> int:
    moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min, tzinfo=CITY_TZ)
    return int(moment.timestamp())


def show_code(
    session: Session, keyring: Keyring, cert: Certificate, names: Iterable[str], *, lifetime: int,
    now: float | None = None,
) -> str:
    if cert.status != "valid":
        raise CertificateError(f"this certificate is {cert.status}")
    cert_type = session.get(CertType, cert.type_code)
    assert cert_type is not None
    moment = dt.datetime.now(CITY_TZ) if now is None else dt.datetime.fromtimestamp(now, CITY_TZ)
    values = disclosed_values(cert, cert_type, names, moment.date())
    return issue_show_code(
        keyring.signer(cert.department_id), cert_id=cert.id, type_code=cert.type_code, holder=cert.holder,
        valid_from=_epoch(cert.valid_from), valid_until=_epoch(cert.valid_until, end=True),
        status_index=cert.status_index, disclosed=values, lifetime=lifetime, now=now,
    )


def check(
    session: Session, client: ApiClient, *, subject: str, type_code: str, predicate: str | None,
    now: dt.datetime | None = None, purpose: str | None = None,
) -> CheckRecord:
    """Does *subject* hold a valid certificate of *type_code* (for which *predicate* holds)? *purpose*, what the
    verifier states it asks for, is kept with the record and in the access log the subject reads."""
    if type_code not in client.allowed_types:
        raise PermissionError(f"not allowed to ask about {type_code}")
    if predicate is not None and predicate not in client.allowed_predicates:
        raise PermissionError(f"not allowed to ask about {predicate}")
    cert_type = session.get(CertType, type_code)
    if cert_type is None:
        raise NotFound(f"no certificate type {type_code!r}")
    predicates = {p["name"] for p in cert_type.predicates}
    fields = {f["name"]: f for f in cert_type.fields}
    if predicate is not None and predicate not in predicates and fields.get(predicate, {}).get("type") != "bool":
        raise CertificateError(f"{predicate} is not a predicate or yes/no field of {type_code}")
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(CITY_TZ)
    rules = {p["name"]: p for p in cert_type.predicates}
    answer = False
    for cert in session.scalars(select(Certificate).where(
            Certificate.holder == subject, Certificate.type_code == type_code, Certificate.status == "valid")):
        if not cert.valid_from <= moment.date() <= cert.valid_until:
            continue
        if predicate is None:
            holds = True
        elif predicate in rules:  # a derived predicate: computed, never disclosed
            rule = rules[predicate]
            holds = age_on(dt.date.fromisoformat(cert.fields[rule["field"]]), moment.date()) >= rule["value"]
        else:  # a yes/no field of the certificate, disclosable or not
            holds = cert.fields.get(predicate) is True
        if holds:
            answer = True
            break
    record = CheckRecord(client_id=client.id, subject=subject, cert_type=type_code, predicate=predicate,
                         answer=answer, receipt_id=secrets.token_hex(8), at=moment, purpose=purpose)
    session.add(record)
    session.flush()

    accesslog.append(session, actor=f"{client.role}:{client.id}", actor_label=client.name, subject=subject,
                     action="check", what=[{"type": type_code, "fields": [predicate] if predicate else []}],
                     purpose=purpose, outcome="yes" if answer else "no", now=moment)
    return record


def subject_kind(subject: str) -> str:
    """resident (pseudonymous id) or company (unified social credit code); CertificateError otherwise."""
    try:
        subject_from_text(subject)
        return "resident"
    except ValueError:
        pass
    try:
        validate_uscc(subject)
        return "company"
    except IdentifierError:
        raise CertificateError("subject is neither a resident id nor a unified social credit code") from None
