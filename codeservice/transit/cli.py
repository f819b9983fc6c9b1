"""Transit commands: operators, transit accounts, a software phone, a gate simulator, clearing.

- ``citycode operator add --id ID --name NAME --kind metro|bus|scenic --fares FILE [--discount CARD=PERCENT ...]``
- ``citycode operator list``
- ``citycode transit account RESIDENT_ID [--card-type T] [--fare-limit CENTS]``
- ``citycode transit partitions [--ahead N] [--from DAY]``: the partitions of the days ahead (PostgreSQL).
- ``citycode ride codes RESIDENT_ID [--count N] [--png FILE] [--at TIME]``: a software phone (its device key
  kept in the data directory) registers like the page does and prints ride codes, one per line.
- ``citycode gate run --operator OP --gate-id G (--station S | --line L) [--direction in|out] ...``: a gate
  simulator that reads codes (arguments, ``--image FILE``, or lines on standard input, ``@FILE`` for an
  image), decides, keeps its records in its own store, and uploads them when given ``--upload URL``.
- ``citycode gate upload --store FILE --upload URL --device-key KEY`` and ``citycode gate records --store FILE``.
- ``citycode clearing run --date YYYY-MM-DD [--operator OP] [--csv FILE]``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from codeservice.cli.common import EXIT_REFUSED, echo_json, fail, load_services, parse_time
from codeservice.transit.clearing import (
    csv_rows,
    day_is_over,
    parse_day,
    run_clearing,
    statement_json,
    trips_of_day,
)
from codeservice.transit.models import Operator, RideDevice
from codeservice.transit.partitions import DAYS_AHEAD, ensure_partitions, existing_days, is_partitioned
from codeservice.transit.service import (
    TransitError,
    account_json,
    add_operator,
    device_of,
    devices_json,
    operator_json,
    register_device,
    renew_credential,
    rules_of,
    set_account,
)
from issuers import render
from issuers.rides import compressed_point, make_ride_code
from sdk import TrustList, Verifier, load_anchor
from sdk.citytime import city_today, service_day
from sdk.gate import Gate, GateConfig, GateConfigError, GateStore
from sdk.keys import b64u_encode
from sdk.statuslist import StatusCache, StatusListError
from sdk.upload import Uploader
from verifiers.scenes import SCENES
from verifiers.transit import StateSharedGuard

if TYPE_CHECKING:
    from codeservice.services import Services


def _transit_errors(block: Any) -> Any:
    """Run *block*; transit and database errors become exit 2 with their message."""
    from sqlalchemy.exc import SQLAlchemyError


    try:
        return block()
    except TransitError as exc:
        fail(str(exc), exc.reason)
    except SQLAlchemyError as exc:
        fail(f"database error: {exc.__class__.__name__}", "database_error")


# -- operators and accounts --------------------------------------------------------------------------------
@click.group("operator")
def operator_group() -> None:
    """Transport and scenic-site operators and their fare rules."""


@operator_group.command("add")
@click.option("--id", "operator_id", required=True)
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["metro", "bus", "scenic"]))
@click.option("--fares", "fares_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="JSON file of fare rules (docs/transit.md)")
@click.option("--discount", "discounts", multiple=True, help="CARD=PERCENT paid, e.g. student=50 (repeat)")
def operator_add(operator_id: str, name: str, kind: str, fares_path: Path, discounts: tuple[str, ...]) -> None:
    """Register an operator; its fares are checked (a bad file is exit 2 naming the problem)."""

    try:
        fares = json.loads(fares_path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read fares from {fares_path}: {exc}")
    percents: dict[str, Any] = {}
    for item in discounts:
        card, _, percent = item.partition("=")
        if not percent.isdigit():
            fail(f"--discount takes CARD=PERCENT, got {item!r}", "usage")
        percents[card] = int(percent)
    services = load_services()

    def add() -> dict[str, Any]:
        with services.db.session() as db:
            return operator_json(add_operator(db, operator_id, name, kind, fares, percents))

    echo_json(_transit_errors(add))


@operator_group.command("list")
def operator_list() -> None:
    from sqlalchemy import select


    with load_services().db.session() as db:
        echo_json([operator_json(o) for o in db.scalars(select(Operator).order_by(Operator.id))])


@click.group("transit")
def transit_group() -> None:
    """Residents' transit accounts."""


@transit_group.command("account")
@click.argument("resident_id")
@click.option("--card-type", type=click.Choice(["adult", "student", "elderly", "disabled"]))
@click.option("--fare-limit", type=click.IntRange(0, 1_000_000), help="per-ride limit in cents")
def transit_account(resident_id: str, card_type: str | None, fare_limit: int | None) -> None:
    """Show (and set) a resident's transit account. New credentials carry the change."""

    services = load_services()

    def run() -> dict[str, Any]:
        with services.db.session() as db:
            account = set_account(db, resident_id, card_type=card_type, fare_limit=fare_limit,
                                  default_limit=services.settings.ride_fare_limit, today=city_today())
            return {**account_json(account), "devices": devices_json(db, account)}

    echo_json(_transit_errors(run))


@transit_group.command("partitions")
@click.option("--ahead", type=click.IntRange(1, 366), default=DAYS_AHEAD, show_default=True,
              help="days to make, today included")
@click.option("--from", "first", help="the first operating day (YYYY-MM-DD; default today's operating day)")
def transit_partitions(ahead: int, first: str | None) -> None:
    """Make the gate records' and trips' partitions of the operating days ahead (PostgreSQL; nothing on SQLite)."""
    services = load_services()
    start = parse_day(first) if first else dt.date.fromisoformat(service_day(time.time()))
    if start is None:
        fail(f"--from must be a day YYYY-MM-DD, got {first!r}")
    created = ensure_partitions(services.db.engine, start, ahead)
    with services.db.engine.connect() as connection:
        days = sorted(existing_days(connection)) if is_partitioned(connection) else []
    echo_json({"from": start.isoformat(), "ahead": ahead, "created": created,
               "partitioned": services.db.engine.dialect.name == "postgresql" and bool(days),
               "days": [day.isoformat() for day in days]})


# -- a software phone ------------------------------------------------------------------------------------------
@click.group("ride")
def ride_group() -> None:
    """Ride codes made by a software phone (to try gates without a browser)."""


def _phone(services: Services, resident_id: str, now: float) -> tuple[Any, bytes]:
    """The software phone of a resident: its device key (made once, kept 0600) and a current credential."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec


    if not resident_id.isalnum() or len(resident_id) > 32:
        fail(f"not a resident id: {resident_id!r}", "usage")
    folder = services.settings.home / "phones"
    folder.mkdir(mode=0o700, exist_ok=True)
    key_file = folder / f"{resident_id}.key.pem"
    if key_file.exists():
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    s = services.settings

    def certify() -> bytes:
        from sqlalchemy import select


        with services.db.session() as db:
            point = b64u_encode(compressed_point(key.public_key()))
            device = db.scalars(select(RideDevice).where(RideDevice.public_key == point)).one_or_none()
            if device is not None and device.status == "valid":
                device_of(db, resident_id, device.id)
                cred = renew_credential(db, services.keyring, resident_id, device.id,
                                        lifetime=s.ride_credential_hours * 3600, validity=s.ride_code_validity,
                                        now=now)
            else:
                cred = register_device(db, services.keyring, resident_id, key.public_key(), label="software phone",
                                       fare_limit=s.ride_fare_limit, lifetime=s.ride_credential_hours * 3600,
                                       validity=s.ride_code_validity, status_list_size=s.status_list_size, now=now)
            return cred.credential

    return key, _transit_errors(certify)


@ride_group.command("codes")
@click.argument("resident_id")
@click.option("--count", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), help="also write the QR (-N per code)")
@click.option("--at", "at_text", help="make the codes as if at this time (ISO 8601)")
def ride_codes(resident_id: str, count: int, png: Path | None, at_text: str | None) -> None:
    """Print ride codes of the resident's software phone, one per line."""

    services = load_services()
    at = parse_time(at_text)
    now = time.time() if at is None else at
    key, credential = _phone(services, resident_id, now)
    for number in range(1, count + 1):
        code = make_ride_code(key, credential, now=now)
        click.echo(code)
        if png is not None:
            target = png if count == 1 else png.with_name(f"{png.stem}-{number}{png.suffix}")
            target.write_bytes(render.png(code))


# -- the gate simulator ---------------------------------------------------------------------------------------
@click.group("gate")
def gate_group() -> None:
    """A gate simulator: scan codes, keep records, upload them exactly once."""


def _inputs(texts: tuple[str, ...], images: tuple[Path, ...]) -> Iterator[tuple[str | Path, bool]]:
    if texts or images:
        yield from ((t, False) for t in texts)
        yield from ((p, True) for p in images)
        return
    for line in sys.stdin:
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("@"):
            yield Path(line[1:]), True
        else:
            yield line, False


def _uploader(store: Any, url: str | None, device_key: str | None) -> Any:
    if url is None:
        return None
    if not device_key:
        fail("--upload needs --device-key (a device key of the operator: citycode client add --role device)",
              "usage")

    return Uploader(store, url, device_key, batch_size=100)


@gate_group.command("run")
@click.argument("texts", nargs=-1)
@click.option("--operator", "operator_id", required=True)
@click.option("--gate-id", required=True)
@click.option("--station", help="metro station or scenic site")
@click.option("--line", help="bus line")
@click.option("--direction", type=click.Choice(["in", "out"]), help="metro gates: in or out")
@click.option("--scene", "scene_name", help="default: metro-gate, bus or scenic-gate by the operator's kind")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--store", "store_path", type=click.Path(dir_okay=False, path_type=Path),
              help="the gate's own store (default: <home>/gates/<operator>-<gate>.sqlite3)")
@click.option("--shared/--no-shared", default=False,
              help="consult the operator's shared guard (the service's state store) as an online gate does")
@click.option("--upload", "upload_url", help="service URL to upload records to (e.g. http://127.0.0.1:8000)")
@click.option("--device-key", envvar="CITYCODE_DEVICE_KEY", help="the gate's device key (or CITYCODE_DEVICE_KEY)")
@click.option("--upload-every", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--at", "at_text", help="the gate's clock (ISO 8601), for trying stale codes")
def gate_run(
    texts: tuple[str, ...], operator_id: str, gate_id: str, station: str | None, line: str | None,
    direction: str | None, scene_name: str | None, images: tuple[Path, ...], store_path: Path | None, shared: bool,
    upload_url: str | None, device_key: str | None, upload_every: int, at_text: str | None,
) -> None:
    """Scan codes as a gate: one JSON decision per line; exit 0 when every scan opened, 1 when one did not."""
    from contextlib import suppress


    services = load_services()
    with services.db.session() as db:
        operator = db.get(Operator, operator_id)
        if operator is None:
            fail(f"no operator {operator_id!r}; see 'citycode operator list'", "not_found")
        rules = rules_of(operator)
        kind = operator.kind
    scene_name = scene_name or {"metro": "metro-gate", "bus": "bus", "scenic": "scenic-gate"}[kind]
    if scene_name not in SCENES:
        fail(f"unknown scene {scene_name!r}; known: {', '.join(SCENES)}", "usage")
    if kind == "metro" and station not in rules.stations():
        fail(f"--station must be a station of {operator_id}: {', '.join(rules.stations())}", "usage")
    if kind == "scenic" and rules.entry_price(station) is None:
        fail(f"--station must be a site of {operator_id}: {', '.join(sorted(rules.raw['sites']))}", "usage")
    try:
        config = GateConfig(gate_id=gate_id, operator=operator_id, kind=kind, scene=SCENES[scene_name],
                            station=station, line=line, direction=direction,
                            fares=rules.fare_for_gate(station=station, line=line),
                            daily_capacity=rules.capacity(station) if kind == "scenic" and station else None)
    except GateConfigError as exc:
        fail(str(exc), "usage")
    at = parse_time(at_text)
    # The gate holds what a sync gives it: the trust list and every status list, verified with the anchor.
    anchor = load_anchor(services.keyring.anchor_public_pem())
    trust = TrustList.load(services.trust_list_token(now=at), anchor, at=at)
    cache = StatusCache()
    for token in services.status_tokens(now=at):
        with suppress(StatusListError):
            cache.load(token, trust, at=at)
    verifier = Verifier(trust, leeway=services.settings.leeway, status=cache)
    folder = services.settings.home / "gates"
    folder.mkdir(mode=0o700, exist_ok=True)
    store = GateStore(store_path or folder / f"{operator_id}-{gate_id}.sqlite3")
    gate = Gate(config, verifier, store, shared=StateSharedGuard(services.state) if shared else None,
                clock=(lambda: at) if at is not None else time.time)
    uploader = _uploader(store, upload_url, device_key)
    all_opened = True
    for scans, (code, is_image) in enumerate(_inputs(texts, images), start=1):
        decision = gate.scan(code, image=is_image)
        all_opened &= decision.opened
        click.echo(json.dumps(decision.to_dict(), ensure_ascii=False))
        sys.stdout.flush()
        if uploader is not None and scans % upload_every == 0:
            click.echo(json.dumps({"upload": uploader.upload().to_dict()}))
    if uploader is not None:
        click.echo(json.dumps({"upload": uploader.upload().to_dict(), "store": store.counts()}))
    store.close()
    sys.exit(0 if all_opened else EXIT_REFUSED)


@gate_group.command("upload")
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--upload", "upload_url", required=True)
@click.option("--device-key", envvar="CITYCODE_DEVICE_KEY", required=True)
def gate_upload(store_path: Path, upload_url: str, device_key: str) -> None:
    """Upload a gate store's pending records; exit 1 when some could not be delivered."""

    store = GateStore(store_path)
    report = _uploader(store, upload_url, device_key).upload()
    echo_json({**report.to_dict(), "store": store.counts()})
    store.close()
    sys.exit(EXIT_REFUSED if report.errors else 0)


@gate_group.command("records")
@click.option("--store", "store_path", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path))
def gate_records(store_path: Path) -> None:
    """Print every record a gate store holds, one JSON line each, with its upload state."""

    store = GateStore(store_path)
    for record in store.records():
        click.echo(json.dumps(record))
    store.close()


# -- clearing ------------------------------------------------------------------------------------------------
@click.group("clearing")
def clearing_group() -> None:
    """Daily clearing statements (清分)."""


@clearing_group.command("run")
@click.option("--date", "day_text", required=True, help="operating day YYYY-MM-DD (04:00 to 04:00 city time)")
@click.option("--operator", "operator_id", help="one operator (default: every operator)")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="write the trips as CSV (one file; with several operators, one file each: NAME-OPERATOR.csv)")
def clearing_run(day_text: str, operator_id: str | None, csv_path: Path | None) -> None:
    """Clear a day: trips, fares, and what the account platform owes each operator; print the statements."""
    from sqlalchemy import select


    day = parse_day(day_text)
    if day is None:
        fail(f"--date must be YYYY-MM-DD, got {day_text!r}", "usage")
    if not day_is_over(day):
        fail(f"{day} is not over yet: operating days end at 04:00 city time", "day_not_over")
    services = load_services()

    def run() -> list[dict[str, Any]]:
        out = []
        with services.db.session() as db:
            ids = [operator_id] if operator_id else list(db.scalars(select(Operator.id).order_by(Operator.id)))
            for oid in ids:
                statement = run_clearing(db, oid, day)
                operator = db.get(Operator, oid)
                assert operator is not None
                out.append(statement_json(statement, operator))
                if csv_path is not None:
                    target = csv_path if len(ids) == 1 else csv_path.with_name(f"{csv_path.stem}-{oid}.csv")
                    with open(target, "w", encoding="utf-8", newline="") as f:
                        f.writelines(csv_rows(oid, day, trips_of_day(db, oid, day)))
        return out

    statements = _transit_errors(run)
    echo_json(statements[0] if operator_id else statements)


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (operator_group, transit_group, ride_group, gate_group, clearing_group,)
