"""What every ``citycode`` command shares: JSON on standard output, ``{error, message}`` and exit 2 on
standard error for a usage or input error, the settings and the services, and time options."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from codeservice.config import ConfigError, Settings
from codeservice.errors import NotFound, Refused
from codeservice.services import Services
from issuers.keyring import KeyringError

EXIT_REFUSED = 1
EXIT_INPUT = 2


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False))


def fail(message: str, error: str = "input_error") -> NoReturn:
    click.echo(json.dumps({"error": error, "message": message}, ensure_ascii=False), err=True)
    sys.exit(EXIT_INPUT)


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        fail(str(exc), "config_error")


def load_services(initialise: bool = True):  # type: ignore[no-untyped-def]
    services = Services(load_settings())
    if initialise:
        try:
            services.initialise()
        except Exception as exc:  # database unreachable, home not writable, ...
            fail(f"cannot initialise {services.settings.home}: {exc.__class__.__name__}: {exc}", "init_error")
    return services


# -- verification ----------------------------------------------------------------------------
def parse_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--at must be an ISO-8601 time, got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


@contextmanager
def registry() -> Iterator[tuple[Services, Session]]:
    """The services and one database transaction; a refusal becomes exit 2 with its message.

    Print only after the block has ended, so that nothing is reported that was not committed.
    """
    services = load_services()
    try:
        with services.db.session() as session:
            yield services, session
    except NotFound as exc:
        fail(str(exc), "not_found")
    except Refused as exc:
        fail(str(exc))
    except KeyringError as exc:
        fail(str(exc), "keyring_error")
    except IntegrityError:
        fail("conflicts with a concurrent change; try again", "conflict")
    except SQLAlchemyError as exc:
        fail(f"database error: {exc.__class__.__name__}", "database_error")


def names_option(text: str | None, option: str) -> list[str]:
    """A comma-separated list of names, without blanks or repeats."""
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        fail(f"{option}: {', '.join(repeated)} given twice", "usage")
    return names
