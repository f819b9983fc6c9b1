"""``citycode office``: service-hall offices, the purposes they may state and the certificates they may ask for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from codeservice.certificates.service import CertificateError
from codeservice.cli.common import echo_json, fail, registry
from codeservice.clients.models import ApiClient
from codeservice.consent.models import Office
from codeservice.consent.service import add_office

if TYPE_CHECKING:

    pass


# -- offices -------------------------------------------------------------------------------------
@click.group()
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


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (office,)
