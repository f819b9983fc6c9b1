"""``citycode federation``: the cities this city trusts, and the statement its gates load."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click

from codeservice.cli.common import echo_json, fail, names_option, registry
from codeservice.errors import Refused
from codeservice.federation import service, settlement
from codeservice.transit.clearing import parse_day


def _epoch(value: str | None, option: str) -> int | None:
    """A date (YYYY-MM-DD, the end of that day in UTC is not implied: its start) or ISO time, as epoch seconds."""
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option} must be a date (YYYY-MM-DD) or an ISO-8601 time, got {value!r}", "usage")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp())


@click.group("federation")
def federation_group() -> None:
    """Cities this city trusts: their anchors, for which kinds and scenes, until when (docs/federation.md)."""


@federation_group.command("add")
@click.option("--city", "city", required=True, help="the other city's id (its CITYCODE_CITY)")
@click.option("--name", default="", help="the other city's name")
@click.option("--url", required=True, help="base URL of the other city's service")
@click.option("--anchor", "anchor_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="the other city's trust-anchor public key (PEM), received from it out of band")
@click.option("--anchor-kid", help="the anchor's key id as the other city states it (base64url): checked")
@click.option("--kinds", required=True, help="kinds accepted, comma-separated: id,cert,ride (empty: none)")
@click.option("--scenes", default="", help="scenes where they are accepted, comma-separated (empty: all)")
@click.option("--valid-from", help="start (YYYY-MM-DD or ISO time; default now)")
@click.option("--valid-until", required=True, help="end (YYYY-MM-DD or ISO time)")
def federation_add(city: str, name: str, url: str, anchor_path: Path, anchor_kid: str | None, kinds: str,
                   scenes: str, valid_from: str | None, valid_until: str) -> None:
    """Trust another city's codes (or change its terms)."""
    try:
        pem = anchor_path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {anchor_path}: {exc}")
    try:
        anchor = service.parse_anchor(pem)
    except Refused as exc:
        fail(str(exc))
    until = _epoch(valid_until, "--valid-until")
    assert until is not None
    with registry() as (services, session):
        row = service.add_city(
            session, city=city, name=name, url=url, anchor=anchor, kinds=names_option(kinds, "--kinds"),
            scenes=names_option(scenes, "--scenes"), valid_from=_epoch(valid_from, "--valid-from"),
            valid_until=until, own_city=services.settings.city, anchor_kid=anchor_kid)
        out = service.city_json(row)
    echo_json(out)


@federation_group.command("list")
def federation_list() -> None:
    """Every city known, active or ended."""
    with registry() as (_services, session):
        out = [service.city_json(r) for r in service.list_cities(session)]
    echo_json(out)


@federation_group.command("end")
@click.argument("city")
def federation_end(city: str) -> None:
    """End the federation with CITY now; gates refuse its codes after they refresh."""
    with registry() as (_services, session):
        out = service.city_json(service.end_city(session, city))
    echo_json(out)


@federation_group.command("publish")
@click.option("-o", "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
              help="write the statement to this file (default: standard output)")
def federation_publish(out_path: Path | None) -> None:
    """Sign this city's federation statement with its trust anchor (what GET /api/v1/federation serves)."""
    with registry() as (services, session):
        token = service.statement_token(session, services.keyring, city=services.settings.city,
                                        validity=services.settings.trust_validity, now=time.time())
        count = len(service.list_cities(session))
    if out_path is None:
        click.echo(token)
        return
    try:
        out_path.write_text(token + "\n", "ascii")
    except OSError as exc:
        fail(f"cannot write {out_path}: {exc}")
    echo_json({"written": str(out_path), "city": services.settings.city, "cities": count})


COMMANDS = (federation_group,)


# -- settlement between cities ------------------------------------------------------------------------------
def _day(text: str) -> dt.date:
    day = parse_day(text)
    if day is None:
        fail(f"--day must be YYYY-MM-DD, got {text!r}", "usage")
    return day


@federation_group.command("visits")
@click.option("--city", "home_city", required=True, help="the visitors' home city")
@click.option("--day", "day_text", required=True, help="operating day, YYYY-MM-DD (cleared already)")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def federation_visits(home_city: str, day_text: str, out_path: Path) -> None:
    """Write the signed file of CITY's residents' trips on this city's operators on DAY, for CITY to import."""
    day = _day(day_text)
    with registry() as (services, session):
        evidence = services.evidence_verifier()
        found = settlement.record_hosted(session, evidence, own_city=services.settings.city, day=day)
        token = settlement.visits_token(session, services.keyring, own_city=services.settings.city,
                                        home_city=home_city, day=day)
    try:
        out_path.write_text(token + "\n", "ascii")
    except OSError as exc:
        fail(f"cannot write {out_path}: {exc}")
    echo_json({"written": str(out_path), "home_city": home_city, "service_day": day.isoformat(),
               "visitor_trips": found})


@federation_group.command("import")
@click.argument("visits_path", type=click.Path(dir_okay=False, path_type=Path))
def federation_import(visits_path: Path) -> None:
    """Import another city's visits file: each trip of this city's residents there, proven by its ride codes."""
    try:
        token = visits_path.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {visits_path}: {exc}")
    with registry() as (services, session):
        out = settlement.import_visits(session, token, own_city=services.settings.city, lists=services.federated,
                                       evidence=services.evidence_verifier())
    echo_json(out)


@federation_group.command("statement")
@click.option("--city", "other_city", required=True, help="the other city")
@click.option("--day", "day_text", required=True, help="operating day, YYYY-MM-DD")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="also write the CSV")
def federation_statement(other_city: str, day_text: str, csv_path: Path | None) -> None:
    """The inter-city statement of DAY with CITY: both directions, integer cents, the CSV's SHA-256."""
    day = _day(day_text)
    with registry() as (services, session):
        settlement.record_hosted(session, services.evidence_verifier(), own_city=services.settings.city, day=day,
                                 required=False)
        out = settlement.statement(session, own_city=services.settings.city, other_city=other_city, day=day)
    if csv_path is not None:
        try:
            csv_path.write_text(out["csv"], "utf-8")
        except OSError as exc:
            fail(f"cannot write {csv_path}: {exc}")
    echo_json({k: v for k, v in out.items() if k != "csv"})

