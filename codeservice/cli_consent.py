"""Commands for offices, their clerks, devices and auditors, and the access log.

Registered on the ``citycode`` group by an import at the end of :mod:`codeservice.cli`; the same
conventions hold: JSON on standard output, exit 2 with a JSON ``{error, message}`` on standard
error for a usage or input error.

- ``citycode office add --id ID --name NAME --purpose P ... [--type T ...] [--service S ...]``
- ``citycode office list``
- ``citycode client add --role clerk|device|auditor --name NAME [--office ID] [--rate N]``: prints
  ``{id, name, role, office, rate_per_minute, key}``; the key is shown this once (administrators and
  verifiers: ``citycode apikey add``).
- ``citycode audit verify``: walks the hash-chained access log and its signed checkpoints; prints
  ``{ok, entries, checkpoints, first_bad_seq, problem}``; exit 0 when intact, 1 naming the first bad entry.
- ``citycode audit checkpoint``: signs a checkpoint at the newest entry (key of the ``city-audit`` issuer).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from codeservice.cli import EXIT_REFUSED, _fail, _out, _services, main
from codeservice.cli_certs import _registry

# Run as ``python -m codeservice.cli``, the command group is that of ``__main__``: register there.
_entry = sys.modules.get("__main__")
if getattr(getattr(_entry, "__spec__", None), "name", None) == "codeservice.cli":
    main = _entry.main  # type: ignore[union-attr]

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from codeservice.services import Services


# -- offices -------------------------------------------------------------------------------------
@main.group()
def office() -> None:
    """Offices (a service-hall window, a hospital desk): the purposes they state, the certificates they ask for."""


def _office_json(found) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"id": found.id, "name": found.name, "purposes": list(found.purposes),
            "cert_types": list(found.cert_types), "services": list(found.services or [])}


@office.command("add")
@click.option("--id", "office_id", required=True, help="2-64 lowercase letters, digits and dashes, e.g. xz-hall-w3")
@click.option("--name", required=True, help="as residents read it, e.g. 'Window 3, Xuzhou service hall'")
@click.option("--purpose", "purposes", multiple=True, required=True, help="a purpose its clerks may state; repeatable")
@click.option("--type", "type_codes", multiple=True, help="a certificate type its clerks may request; repeatable")
@click.option("--service", "services", multiple=True, help="a queue (取号) its kiosks hand out numbers for; repeatable")
def office_add(office_id: str, name: str, purposes: tuple[str, ...], type_codes: tuple[str, ...],
               services: tuple[str, ...]) -> None:
    """Register an office."""
    from codeservice.certificates import CertificateError
    from codeservice.consent import add_office

    clean_services = [s.strip() for s in services]
    if any(not s or len(s) > 64 for s in clean_services):
        _fail("--service: 1 to 64 characters each")
    with _registry() as (_svc, session):
        if len(set(type_codes)) != len(type_codes) or len(set(purposes)) != len(purposes):
            raise CertificateError("each --purpose and --type once")
        made = add_office(session, office_id.strip(), name.strip(), [p.strip() for p in purposes],
                          [t.strip().upper() for t in type_codes], list(dict.fromkeys(clean_services)))
        out = _office_json(made)
    _out(out)


@office.command("list")
def office_list() -> None:
    """Every office, with its clerks and devices (names and ids, never keys)."""
    from sqlalchemy import select

    from codeservice.models import ApiClient, Office

    with _registry() as (_svc, session):
        out = []
        for found in session.scalars(select(Office).order_by(Office.id)):
            clients = session.scalars(select(ApiClient).where(ApiClient.office_id == found.id)
                                      .order_by(ApiClient.id))
            out.append({**_office_json(found), "clients": [
                {"id": c.id, "name": c.name, "role": c.role, "active": c.active,
                 "rate_per_minute": c.rate_per_minute} for c in clients]})
    _out(out)


# -- clerks, devices, auditors ---------------------------------------------------------------------
@main.group()
def client() -> None:
    """Clerks and devices (bound to an office) and auditors; administrators and verifiers: 'citycode apikey'."""


@client.command("add")
@click.option("--role", required=True, type=click.Choice(["clerk", "device", "auditor", "operator"]))
@click.option("--name", required=True, help="as residents read it, e.g. 'Clerk Zhou' or 'Queue kiosk 1'")
@click.option("--office", "office_id", help="the office of a clerk or a kiosk")
@click.option("--operator", "operator_id", help="the operator of a gate (device) or of operator staff")
@click.option("--rate", "rate", type=click.IntRange(1, 100_000), default=60, show_default=True,
              help="requests a minute the client may make")
def client_add(role: str, name: str, office_id: str | None, operator_id: str | None, rate: int) -> None:
    """Create a client and print its key. The key is shown this once; only its hash is kept."""
    from codeservice.certificates import add_api_client

    if role == "clerk" and not office_id:
        _fail("a clerk belongs to an office: give --office", "usage")
    if role == "device" and bool(office_id) == bool(operator_id):
        _fail("a device belongs to an office (a kiosk: --office) or an operator (a gate: --operator)", "usage")
    if role == "operator" and (not operator_id or office_id):
        _fail("operator staff belong to an operator: give --operator (and no --office)", "usage")
    if role in ("clerk", "auditor") and operator_id:
        _fail(f"a {role} belongs to no operator: leave out --operator", "usage")
    if role == "auditor" and office_id:
        _fail("an auditor belongs to no office: leave out --office", "usage")
    with _registry() as (_svc, session):
        made, key = add_api_client(session, name.strip(), role, office=office_id.strip() if office_id else None,
                                   rate_per_minute=rate, operator=operator_id.strip() if operator_id else None)
        out = {"id": made.id, "name": made.name, "role": made.role, "office": made.office_id,
               "operator": made.operator_id, "rate_per_minute": made.rate_per_minute, "key": key}
    _out(out)


# -- the access log ------------------------------------------------------------------------------------
@contextmanager
def _log_session() -> Iterator[tuple[Services, Session]]:
    """An initialised home's services and one transaction; nothing is created or migrated here."""
    from sqlalchemy.exc import SQLAlchemyError

    services = _services(initialise=False)
    if not (services.settings.home / "secret_key").exists():
        _fail(f"{services.settings.home} is not initialised; run 'citycode init' first", "init_error")
    try:
        with services.db.session() as session:
            yield services, session
    except SQLAlchemyError as exc:
        _fail(f"database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}", "database_error")


@main.group()
def audit() -> None:
    """The hash-chained access log: verify it, sign checkpoints."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the whole log; exit 0 when intact, 1 naming the first altered, missing or misplaced entry."""
    from codeservice.accesslog import verify_chain

    with _log_session() as (services, session):
        report = verify_chain(session, services.audit_key)
    _out(report.to_dict())
    sys.exit(0 if report.ok else EXIT_REFUSED)


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign a checkpoint at the newest entry (for example at the end of each day)."""
    from codeservice.accesslog import checkpoint_head
    from codeservice.consent import signer_for_audit
    from issuers.keyring import KeyringError
    from sdk.keys import b64u_encode

    with _log_session() as (services, session):
        try:
            signer = signer_for_audit(services.keyring)
        except KeyringError as exc:
            _fail(f"no audit key: {exc}; run 'citycode init'", "keyring_error")
        mark = checkpoint_head(session, signer)
        out = {"seq": mark.seq, "hash": mark.hash, "issuer": signer.issuer, "kid": b64u_encode(signer.kid)} \
            if mark is not None else {"seq": None, "message": "the log is empty; nothing to vouch for"}
    _out(out)
