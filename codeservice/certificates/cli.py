"""Commands for departments, certificate types, certificates and status lists.

Added to the ``citycode`` group by :mod:`codeservice.cli.main`; the same conventions hold: JSON on
standard output, exit 2 with a JSON ``{error, message}`` on standard error for any usage or input error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from codeservice.certificates.models import Certificate, CertType, Department
from codeservice.certificates.service import (
    FIELD_TYPES,
    CertificateError,
    NotFound,
    add_cert_type,
    add_department,
    disclosable,
    get_certificate,
    issue_certificate,
    set_status,
    show_code,
)
from codeservice.cli.common import echo_json, fail, names_option, registry
from codeservice.clients.service import add_api_client
from codeservice.identity.residents import get_resident
from issuers import render
from sdk.certid import CertificateId, IdentifierError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from codeservice.certificates.models import Certificate

_PREDICATE = re.compile(r"^age_over_(\d{1,3}):([a-z][a-z0-9_]{0,39})$")
_NUMBER = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")




def _cert_id(text: str) -> str:
    """A GB/T 36904 identifier, validated here so that a typo gets a precise message."""

    try:
        CertificateId.parse(text)
    except IdentifierError as exc:
        if str(exc) == "wrong check character":
            fail(f"certificate id {text}: wrong check character {text.rsplit('.', 1)[-1]!r} "
                  "(ISO/IEC 7064 MOD 37,36); the identifier was mistyped")
        fail(f"certificate id {text!r}: {exc}")
    return text


def certificate_json(session: Session, cert: Certificate) -> dict[str, Any]:
    """A certificate with its GB/T 36903 metadata."""

    cert_type = session.get(CertType, cert.type_code)
    department = session.get(Department, cert.department_id)
    return {
        "id": cert.id,
        "type": cert.type_code,
        "type_name": cert_type.name if cert_type else None,
        "number": cert.number,
        "holder": cert.holder,
        "holder_kind": cert.holder_kind,
        "issuer": cert.department_id,
        "issuer_name": department.name if department else None,
        "issuer_code": department.org_code if department else None,
        "issued_on": cert.issued_on.isoformat(),
        "valid_from": cert.valid_from.isoformat(),
        "valid_until": cert.valid_until.isoformat(),
        "fields": dict(cert.fields),
        "status": cert.status,
        "status_index": cert.status_index,
        "version": cert.version,
    }


# -- departments and certificate types -----------------------------------------------------------
@click.group()
def dept() -> None:
    """Issuing departments (each an issuer with its own keys in the trust list)."""


@dept.command("add")
@click.option("--id", "dept_id", required=True, help="e.g. civil-affairs")
@click.option("--name", required=True)
@click.option("--org-code", required=True, help="the department's unified social credit code (18 characters)")
def dept_add(dept_id: str, name: str, org_code: str) -> None:
    """Add a department and create its signing key."""

    with registry() as (services, session):
        department = add_department(session, services.keyring, dept_id, name.strip(), org_code.strip().upper())
        out = {"id": department.id, "name": department.name, "org_code": department.org_code,
               "kid": services.keyring.signer(department.id).kid.hex()}
    echo_json(out)


@click.group("cert-type")
def cert_type_group() -> None:
    """Certificate types: fields, derived predicates, validity."""


def _field_spec(text: str) -> dict[str, Any]:
    """NAME[:TYPE][:private]"""

    name, *rest = text.split(":")
    ftype, private = "text", False
    if rest and rest[-1] == "private":
        private = True
        rest = rest[:-1]
    if rest and rest[0] in FIELD_TYPES:
        ftype = rest[0]
        rest = rest[1:]
    if rest or not name:
        fail(f"--field {text!r}: expected NAME[:TYPE][:private] with TYPE one of {', '.join(FIELD_TYPES)}")
    return {"name": name, "type": ftype, "disclosable": not private}


def _predicate_spec(text: str) -> dict[str, Any]:
    """age_over_N:FIELD"""
    match = _PREDICATE.match(text)
    if match is None:
        fail(f"--predicate {text!r}: expected age_over_N:FIELD, e.g. age_over_60:birth_date")
    return {"op": "age_over", "value": int(match.group(1)), "field": match.group(2)}


@cert_type_group.command("add")
@click.option("--code", required=True, help="type code, 2-32 characters 0-9 A-Z (e.g. LNYD)")
@click.option("--name", required=True)
@click.option("--dept", "department", required=True, help="issuing department id")
@click.option("--holder", "holder_kind", required=True, type=click.Choice(["resident", "company"]))
@click.option("--validity-days", default=365, show_default=True, type=click.IntRange(1, 36500))
@click.option("--field", "field_specs", multiple=True, required=True,
              help="NAME[:TYPE][:private], TYPE text|date|int|bool (default text); private: never disclosed")
@click.option("--predicate", "predicate_specs", multiple=True,
              help="age_over_N:FIELD, a yes/no derived from a date field")
def cert_type_add(
    code: str, name: str, department: str, holder_kind: str, validity_days: int,
    field_specs: tuple[str, ...], predicate_specs: tuple[str, ...],
) -> None:
    """Add a certificate type to a department."""

    name = name.strip()
    if not 0 < len(name) <= 200:
        fail("--name: 1 to 200 characters")
    fields = [_field_spec(s) for s in field_specs]
    predicates = [_predicate_spec(s) for s in predicate_specs]
    with registry() as (services, session):
        cert_type = add_cert_type(session, services.keyring, code=code.strip().upper(), name=name,
                                  department=department, holder_kind=holder_kind, fields=fields,
                                  predicates=predicates, validity_days=validity_days)
        out = {"code": cert_type.code, "name": cert_type.name, "department": cert_type.department_id,
               "holder_kind": cert_type.holder_kind, "validity_days": cert_type.validity_days,
               "fields": cert_type.fields, "predicates": cert_type.predicates,
               "disclosable": [item["name"] for item in disclosable(cert_type)]}
    echo_json(out)


# -- certificates ----------------------------------------------------------------------------------
@click.group()
def cert() -> None:
    """Electronic certificates: issue, show (亮证), suspend, reinstate, revoke."""


def _field_values(pairs: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            fail(f"--field {pair!r}: expected NAME=VALUE")
        if name in values:
            fail(f"--field {name} given twice")
        values[name] = value
    return values


@cert.command("issue")
@click.option("--type", "type_code", required=True, help="certificate type code")
@click.option("--holder", required=True, help="resident id, or a company's unified social credit code")
@click.option("--field", "field_pairs", multiple=True, help="NAME=VALUE, one for each field of the type")
@click.option("--number", help="the certificate number printed on it (default: generated)")
def cert_issue(type_code: str, holder: str, field_pairs: tuple[str, ...], number: str | None) -> None:
    """Issue a certificate and print it as JSON."""

    if number is not None and not _NUMBER.match(number.strip()):
        fail("--number: 1 to 64 printable characters")
    values = _field_values(field_pairs)
    with registry() as (services, session):
        issued = issue_certificate(session, type_code=type_code.strip().upper(), holder=holder.strip(),
                                   fields=values, status_list_size=services.settings.status_list_size,
                                   number=number.strip() if number is not None else None)
        out = certificate_json(session, issued)
    echo_json(out)


@cert.command("list")
@click.option("--holder", help="only this holder's certificates")
@click.option("--type", "type_code", help="only certificates of this type")
def cert_list(holder: str | None, type_code: str | None) -> None:
    """List certificates (metadata and fields) as a JSON array."""
    from sqlalchemy import select


    query = select(Certificate).order_by(Certificate.type_code, Certificate.id)
    if holder is not None:
        query = query.where(Certificate.holder == holder.strip())
    if type_code is not None:
        query = query.where(Certificate.type_code == type_code.strip().upper())
    with registry() as (_, session):
        out = [certificate_json(session, c) for c in session.scalars(query)]
    echo_json(out)


@cert.command("show")
@click.argument("cert_id")
@click.option("--fields", "field_names", required=True,
              help="comma-separated fields and predicates to disclose, e.g. name,age_over_60 ('' for none)")
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--svg", "svg_path", type=click.Path(dir_okay=False, path_type=Path))
def cert_show(cert_id: str, field_names: str, png_path: Path | None, svg_path: Path | None) -> None:
    """Sign a short-lived show code carrying only the chosen fields and print its text."""

    names = names_option(field_names, "--fields")
    with registry() as (services, session):
        found = get_certificate(session, _cert_id(cert_id))
        if found.holder_kind == "resident":
            holder = get_resident(session, found.holder)
            if holder is not None and holder.frozen:
                fail(f"the holder's identity ({found.holder}) is frozen; no codes are shown for it", "frozen")
        cert_type = session.get(CertType, found.type_code)
        assert cert_type is not None
        allowed = [item["name"] for item in disclosable(cert_type)]
        refused = [n for n in names if n not in allowed]
        if refused:
            raise CertificateError(f"{found.type_code} certificates cannot disclose {', '.join(refused)}; "
                                   f"choose from {', '.join(allowed) or 'nothing'}")
        text = show_code(session, services.keyring, found, names, lifetime=services.settings.code_lifetime)
    try:
        if png_path is not None:
            png_path.write_bytes(render.png(text))
        if svg_path is not None:
            svg_path.write_text(render.svg(text))
    except OSError as exc:
        fail(f"cannot write image: {exc.strerror}")
    click.echo(text)


def _set_status(cert_id: str, status: str) -> None:
    with registry() as (_, session):
        changed = set_status(session, _cert_id(cert_id), status)
        out = {"id": changed.id, "status": changed.status}
    echo_json(out)


@cert.command("suspend")
@click.argument("cert_id")
def cert_suspend(cert_id: str) -> None:
    """Suspend a certificate for now (status list: suspended)."""
    _set_status(cert_id, "suspended")


@cert.command("reinstate")
@click.argument("cert_id")
def cert_reinstate(cert_id: str) -> None:
    """Make a suspended certificate valid again."""
    _set_status(cert_id, "valid")


@cert.command("revoke")
@click.argument("cert_id")
def cert_revoke(cert_id: str) -> None:
    """Revoke a certificate for good (status list: invalid)."""
    _set_status(cert_id, "revoked")


# -- status lists --------------------------------------------------------------------------------
@click.group()
def status() -> None:
    """Token Status Lists, one per issuing department."""


@status.command("export")
@click.argument("issuer")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def status_export(issuer: str, output: Path) -> None:
    """Write ISSUER's current status list (a statuslist+jwt) to a file, as a gate would fetch it."""
    import jwt

    with registry() as (services, session):
        token = services.status_list(session, issuer)
    try:
        output.write_text(token + "\n")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    claims = jwt.decode(token, options={"verify_signature": False})  # we signed it a moment ago
    echo_json({"written": str(output), "issuer": issuer, "uri": claims["sub"], "bits": claims["status_list"]["bits"],
          "size": services.settings.status_list_size, "issued_at": claims["iat"], "expires_at": claims.get("exp"),
          "ttl": claims.get("ttl")})


# -- API keys ------------------------------------------------------------------------------------
@click.group()
def apikey() -> None:
    """API keys of machine clients: administrators and authorised verifiers (核验)."""


@apikey.command("add")
@click.option("--role", required=True, type=click.Choice(["admin", "verifier"]))
@click.option("--name", required=True)
@click.option("--types", "type_codes", help="comma-separated certificate types a verifier may ask about")
@click.option("--predicates", help="comma-separated predicates (or yes/no fields) of those types it may ask about")
@click.option("--rate", "rate", type=click.IntRange(1, 100_000), default=60, show_default=True,
              help="calls a minute a verifier may make to /verify and /checks (beyond: 429 with Retry-After)")
def apikey_add(role: str, name: str, type_codes: str | None, predicates: str | None, rate: int) -> None:
    """Create a client and print its key. The key is shown this once; only its hash is kept."""

    types = [t.upper() for t in names_option(type_codes, "--types")]
    asked = names_option(predicates, "--predicates")
    with registry() as (_, session):
        answerable: set[str] = set()
        for code in types:
            cert_type = session.get(CertType, code)
            if cert_type is None:
                raise NotFound(f"no certificate type {code!r}")
            answerable |= {p["name"] for p in cert_type.predicates}
            answerable |= {f["name"] for f in cert_type.fields if f["type"] == "bool"}
        unknown = [p for p in asked if p not in answerable]
        if unknown:
            raise CertificateError(f"--predicates: {', '.join(unknown)} is not a predicate or yes/no field of "
                                   f"{', '.join(types) if types else 'the --types given (none)'}")
        client, key = add_api_client(session, name.strip(), role, types, asked, rate_per_minute=rate)
        out = {"id": client.id, "name": client.name, "role": client.role, "key": key,
               "types": client.allowed_types, "predicates": client.allowed_predicates,
               "rate_per_minute": client.rate_per_minute}
    echo_json(out)


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (dept, cert_type_group, cert, status, apikey)
