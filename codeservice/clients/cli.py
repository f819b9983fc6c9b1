"""``citycode client`` and ``citycode apikey``: machine clients (clerks, devices, auditors, operator
staff, administrators and verifiers) and their keys, shown once."""

from __future__ import annotations

import click

from codeservice.certificates.models import CertType
from codeservice.certificates.service import CertificateError, NotFound
from codeservice.cli.common import echo_json, fail, names_option, registry
from codeservice.clients.service import add_api_client


# -- clerks, devices, auditors ---------------------------------------------------------------------
@click.group()
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

    if role == "clerk" and not office_id:
        fail("a clerk belongs to an office: give --office", "usage")
    if role == "device" and bool(office_id) == bool(operator_id):
        fail("a device belongs to an office (a kiosk: --office) or an operator (a gate: --operator)", "usage")
    if role == "operator" and (not operator_id or office_id):
        fail("operator staff belong to an operator: give --operator (and no --office)", "usage")
    if role in ("clerk", "auditor") and operator_id:
        fail(f"a {role} belongs to no operator: leave out --operator", "usage")
    if role == "auditor" and office_id:
        fail("an auditor belongs to no office: leave out --office", "usage")
    with registry() as (_, session):
        made, key = add_api_client(session, name.strip(), role, office=office_id.strip() if office_id else None,
                                   rate_per_minute=rate, operator=operator_id.strip() if operator_id else None)
        out = {"id": made.id, "name": made.name, "role": made.role, "office": made.office_id,
               "operator": made.operator_id, "rate_per_minute": made.rate_per_minute, "key": key}
    echo_json(out)


# -- API keys ------------------------------------------------------------------------------------
@click.group()
def apikey() -> None:
    """API keys of machine clients: administrators and authorised verifiers (核验)."""


@apikey.command("add")
@click.option("--role", required=True, type=click.Choice(["admin", "verifier"]))
@click.option("--name", required=True)
@click.option("--types", "type_codes", help="comma-separated certificate types a verifier may ask about")
@click.option("--predicates", help="comma-separated predicates (or yes/no fields) of those types it may ask about")
def apikey_add(role: str, name: str, type_codes: str | None, predicates: str | None) -> None:
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
        client, key = add_api_client(session, name.strip(), role, types, asked)
        out = {"id": client.id, "name": client.name, "role": client.role, "key": key,
               "types": client.allowed_types, "predicates": client.allowed_predicates}
    echo_json(out)


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (client, apikey,)
