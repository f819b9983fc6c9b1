"""``citycode client``: machine clients (clerks, devices, auditors, operator staff) and their keys, shown once.
Administrators and verifiers, whose allowances name certificate types: ``citycode apikey`` (certificates/cli.py)."""

from __future__ import annotations

import click

from codeservice.cli.common import echo_json, fail, registry
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


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (client,)
