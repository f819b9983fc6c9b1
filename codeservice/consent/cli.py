"""``citycode office``: service-hall offices, the purposes they may state and the certificates they may ask for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from codeservice.certificates.service import CertificateError
from codeservice.cli.common import echo_json, fail, registry
from codeservice.clients.models import ApiClient
from codeservice.consent.models import Office
from codeservice.consent.service import add_office, set_purpose_asks

if TYPE_CHECKING:

    pass


# -- offices -------------------------------------------------------------------------------------
@click.group()
def office() -> None:
    """Offices (a service-hall window, a hospital desk): the purposes they state, the certificates they ask for."""


def _office_json(found) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {"id": found.id, "name": found.name, "purposes": list(found.purposes),
            "cert_types": list(found.cert_types), "services": list(found.services or []),
            "purpose_asks": dict(found.purpose_asks or {})}


@office.command("add")
@click.option("--id", "office_id", required=True, help="2-64 lowercase letters, digits and dashes, e.g. xz-hall-w3")
@click.option("--name", required=True, help="as residents read it, e.g. 'Window 3, Xuzhou service hall'")
@click.option("--purpose", "purposes", multiple=True, required=True, help="a purpose its clerks may state; repeatable")
@click.option("--type", "type_codes", multiple=True, help="a certificate type its clerks may request; repeatable")
@click.option("--service", "services", multiple=True, help="a queue (取号) its kiosks hand out numbers for; repeatable")
def office_add(office_id: str, name: str, purposes: tuple[str, ...], type_codes: tuple[str, ...],
               services: tuple[str, ...]) -> None:
    """Register an office."""

    clean_services = [s.strip() for s in services]
    if any(not s or len(s) > 64 for s in clean_services):
        fail("--service: 1 to 64 characters each")
    with registry() as (_, session):
        if len(set(type_codes)) != len(type_codes) or len(set(purposes)) != len(purposes):
            raise CertificateError("each --purpose and --type once")
        made = add_office(session, office_id.strip(), name.strip(), [p.strip() for p in purposes],
                          [t.strip().upper() for t in type_codes], list(dict.fromkeys(clean_services)))
        out = _office_json(made)
    echo_json(out)


@office.command("list")
def office_list() -> None:
    """Every office, with its clerks and devices (names and ids, never keys)."""
    from sqlalchemy import select


    with registry() as (_, session):
        out = []
        for found in session.scalars(select(Office).order_by(Office.id)):
            clients = session.scalars(select(ApiClient).where(ApiClient.office_id == found.id)
                                      .order_by(ApiClient.id))
            out.append({**_office_json(found), "clients": [
                {"id": c.id, "name": c.name, "role": c.role, "active": c.active,
                 "rate_per_minute": c.rate_per_minute} for c in clients]})
    echo_json(out)


def _asks(values: tuple[str, ...]) -> list[dict[str, object]]:
    """``TYPE:field,field`` each, into ``[{type, fields}]``."""
    asks: list[dict[str, object]] = []
    for value in values:
        code, sep, fields = value.partition(":")
        names = [f.strip() for f in fields.split(",") if f.strip()]
        if not sep or not code.strip() or not names:
            fail(f"--ask {value!r}: TYPE:field,field (e.g. YYZZ:company_name,address)", "usage")
        asks.append({"type": code.strip().upper(), "fields": names})
    return asks


@office.command("purpose")
@click.option("--id", "office_id", required=True, help="the office")
@click.option("--purpose", required=True, help="the purpose, as its clerks state it (added when the office lacks it)")
@click.option("--ask", "asks", multiple=True, required=True,
              help="a certificate type and the fields the purpose needs, TYPE:field,field; repeatable")
def office_purpose(office_id: str, purpose: str, asks: tuple[str, ...]) -> None:
    """Set what a purpose may ask for: only these types and fields (data minimisation)."""
    clean = _asks(asks)
    with registry() as (_, session):
        made = set_purpose_asks(session, office_id.strip(), purpose.strip(), clean)
        out = _office_json(made)
    echo_json(out)


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (office,)
