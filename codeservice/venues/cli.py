"""Venue and service-point commands.

- ``citycode venue add --id ID --name NAME``, ``venue list``, ``venue revoke ID``
- ``citycode venue code ID [--days N] [--png FILE] [--at TIME]``: a fresh venue code (the text), and with
  ``--png`` the printable poster
- ``citycode venue counts ID --date YYYY-MM-DD``: check-ins per hour, never who
- ``citycode venue purge [--at TIME]``: delete the check-ins whose retention has passed
- ``citycode service add --id ID --name NAME --quota N``; ``citycode service point add --service S --id P --name NAME``
  (prints the point's key once)
- ``citycode service use --point P [--at TIME] CODE ...``: an online point's scans, one JSON line each (exit 1 when
  any was not granted): the code verified, one use from the resident's quota shared through the state store
- ``citycode service overdraws --service S --date YYYY-MM-DD``: residents granted more than the quota that day
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from codeservice.cli.common import EXIT_REFUSED, echo_json, fail, load_services, parse_time
from codeservice.state import StateError, StateReplayGuard
from codeservice.venues.models import ServicePoint
from codeservice.venues.points import (
    PointError,
    PointNotFound,
    add_point,
    add_service,
    overdraws,
    point_json,
    service_json,
    use_online,
)
from codeservice.venues.poster import PosterError, poster_png
from codeservice.venues.service import (
    DEFAULT_CODE_DAYS,
    MAX_CODE_DAYS,
    VenueError,
    add_venue,
    counts_per_hour,
    get_venue,
    list_venues,
    purge_checkins,
    revoke_venue,
    venue_code,
    venue_json,
)
from issuers.trustlist import current_trust_list
from sdk.verifier import Verifier


def _run(block: Any) -> Any:
    """Run *block*; refusals and database errors become exit 2 with their message."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return block()
    except (VenueError, PointError) as exc:
        fail(str(exc), exc.reason)
    except SQLAlchemyError as exc:
        fail(f"database error: {exc.__class__.__name__}", "database_error")


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(f"--date must be YYYY-MM-DD, got {text!r}", "usage")


@click.group("venue")
def venue_group() -> None:
    """Venues that post a code residents scan to check in (扫码登记)."""


@venue_group.command("add")
@click.option("--id", "venue_id", required=True)
@click.option("--name", required=True)
def venue_add(venue_id: str, name: str) -> None:
    """Register a venue; its key (for its counts) is printed once."""
    services = load_services()

    def add() -> dict[str, Any]:
        with services.db.session() as db:
            venue, key = add_venue(db, venue_id, name)
            return {**venue_json(venue), "key": key}

    echo_json(_run(add))


@venue_group.command("list")
def venue_list() -> None:
    with load_services().db.session() as db:
        echo_json([venue_json(v) for v in list_venues(db)])


@venue_group.command("revoke")
@click.argument("venue_id")
def venue_revoke(venue_id: str) -> None:
    """Revoke a venue: every code it was given is refused from now on (gates: once their status list refreshes)."""
    services = load_services()

    def revoke() -> dict[str, Any]:
        with services.db.session() as db:
            return venue_json(revoke_venue(db, venue_id))

    echo_json(_run(revoke))


@venue_group.command("code")
@click.argument("venue_id")
@click.option("--days", type=click.IntRange(1, MAX_CODE_DAYS), default=DEFAULT_CODE_DAYS, show_default=True)
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path), help="the printable poster")
@click.option("--at", "at", help="issue time (ISO 8601), for tests and printing ahead")
def venue_code_command(venue_id: str, days: int, png_path: Path | None, at: str | None) -> None:
    services = load_services()
    now = parse_time(at)

    def make() -> tuple[str, str]:
        with services.db.session() as db:
            venue = get_venue(db, venue_id)
            return venue_code(services.keyring, venue, days=days, now=now), venue.name

    code, name = _run(make)
    if png_path is not None:
        try:
            png_path.write_bytes(poster_png(code, name))
        except (OSError, PosterError) as exc:
            fail(f"cannot write the poster {png_path}: {exc}", "output_error")
    echo_json({"venue": venue_id, "code": code, "days": days, "png": str(png_path) if png_path else None})


@venue_group.command("counts")
@click.argument("venue_id")
@click.option("--date", "day", required=True, help="city date YYYY-MM-DD")
def venue_counts(venue_id: str, day: str) -> None:
    """Check-ins per city hour of a day: what the venue sees, never who."""
    services = load_services()
    date = _day(day)

    def counts() -> list[dict[str, int]]:
        with services.db.session() as db:
            return counts_per_hour(db, venue_id, date)

    echo_json({"venue": venue_id, "date": date.isoformat(), "hours": _run(counts)})


@venue_group.command("purge")
@click.option("--at", "at", help="the time to purge as at (ISO 8601); now by default")
def venue_purge(at: str | None) -> None:
    """Delete every check-in kept past the city's retention period."""
    services = load_services()
    now = parse_time(at)

    def purge() -> int:
        with services.db.session() as db:
            return purge_checkins(db, now)

    echo_json({"deleted": _run(purge), "retention_days": services.settings.checkin_retention_days})


@click.group("service")
def service_group() -> None:
    """Services with a daily quota per resident, handed out at points (扫码吸氧 and the like)."""


@service_group.command("add")
@click.option("--id", "service_id", required=True)
@click.option("--name", required=True)
@click.option("--quota", type=click.IntRange(1, 1000), required=True, help="uses a resident a day, all points")
def service_add(service_id: str, name: str, quota: int) -> None:
    services = load_services()

    def add() -> dict[str, Any]:
        with services.db.session() as db:
            return service_json(add_service(db, service_id, name, quota))

    echo_json(_run(add))


@service_group.group("point")
def point_group() -> None:
    """The points of a service."""


@point_group.command("add")
@click.option("--service", "service_id", required=True)
@click.option("--id", "point_id", required=True)
@click.option("--name", required=True)
def point_add(service_id: str, point_id: str, name: str) -> None:
    """Add a point; its key (for its uploads and online uses) is printed once."""
    services = load_services()

    def add() -> dict[str, Any]:
        with services.db.session() as db:
            point, key = add_point(db, service_id, point_id, name)
            return {**point_json(point), "key": key}

    echo_json(_run(add))


@service_group.command("use")
@click.option("--point", "point_id", required=True)
@click.option("--at", "at", help="the scan's time (ISO 8601); now by default")
@click.argument("codes", nargs=-1, required=True)
def service_use(point_id: str, at: str | None, codes: tuple[str, ...]) -> None:
    """Scan identity codes at an online point: each verified, and granted while the resident has uses left."""
    services = load_services()
    s = services.settings
    now = parse_time(at)
    verifier = Verifier(current_trust_list(services.keyring, validity=s.trust_validity), leeway=s.leeway,
                        replay_guard=StateReplayGuard(services.state))
    refused = False

    def scan(code: str) -> dict[str, Any]:
        with services.db.session() as db:
            point = db.get(ServicePoint, point_id)
            if point is None:
                raise PointNotFound("unknown_point", f"no point {point_id!r}")
            return use_online(db, services.state, verifier, point, code, now).to_dict()

    for code in codes:
        try:
            answer = _run(lambda code=code: scan(code))
        except StateError as exc:
            fail(str(exc), "state_unavailable")
        refused = refused or not answer["granted"]
        echo_json(answer)
    if refused:
        sys.exit(EXIT_REFUSED)


@service_group.command("overdraws")
@click.option("--service", "service_id", required=True)
@click.option("--date", "day", required=True, help="city date YYYY-MM-DD")
def service_overdraws(service_id: str, day: str) -> None:
    services = load_services()
    date = _day(day)

    def found() -> list[dict[str, Any]]:
        with services.db.session() as db:
            return overdraws(db, service_id, date)

    echo_json({"service": service_id, "date": date.isoformat(), "overdraws": _run(found)})


COMMANDS = (venue_group, service_group)
