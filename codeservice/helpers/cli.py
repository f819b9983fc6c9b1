"""``citycode helper``: a resident's family helpers (亲友代办), as a service window records them."""

from __future__ import annotations

import datetime as dt

import click

from codeservice.cli.common import echo_json, fail, load_services
from codeservice.helpers import service as helpers
from codeservice.helpers.service import HelperError
from codeservice.identity.residents import frozen_or_none
from sdk.citytime import CITY_TZ


@click.group()
def helper() -> None:
    """Family helpers: who may show a resident's code and answer their requests, until when."""


def _run(step):  # type: ignore[no-untyped-def]
    services = load_services()
    try:
        with services.transaction() as db:
            return step(db)
    except HelperError as exc:
        fail(exc.message, exc.reason)


@helper.command("add")
@click.argument("resident")
@click.argument("helper_pid", metavar="HELPER")
@click.option("--until", "until", required=True, help="last day of the help, YYYY-MM-DD (city time, inclusive)")
def helper_add(resident: str, helper_pid: str, until: str) -> None:
    """Let HELPER (a resident) act for RESIDENT until the end of --until."""
    try:
        day = dt.date.fromisoformat(until)
    except ValueError:
        fail(f"--until must be a date YYYY-MM-DD, got {until!r}", "usage")
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), CITY_TZ).astimezone(dt.UTC)

    def step(db):  # type: ignore[no-untyped-def]
        if frozen_or_none(db, resident) is None:
            raise HelperError("not_found", f"no resident {resident!r}", 404)
        return helpers.grant_json(db, helpers.add_helper(db, resident, helper_pid, end))

    echo_json(_run(step))


@helper.command("list")
@click.argument("resident")
def helper_list(resident: str) -> None:
    """RESIDENT's helpers, and the residents RESIDENT helps."""
    echo_json(_run(lambda db: {"helpers": [helpers.grant_json(db, g) for g in helpers.grants_of(db, resident)],
                               "helping": [helpers.grant_json(db, g) for g in helpers.helping(db, resident)]}))


@helper.command("end")
@click.argument("resident")
@click.argument("grant_id")
def helper_end(resident: str, grant_id: str) -> None:
    """End RESIDENT's grant GRANT_ID at once."""
    echo_json(_run(lambda db: helpers.grant_json(db, helpers.end_helper(db, resident, grant_id))))


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (helper,)
