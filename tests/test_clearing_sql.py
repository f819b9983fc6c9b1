"""Clearing in PostgreSQL (set-based SQL, codeservice/transit/clearing_sql.py) and clearing in Python (the
SQLite path) give the same statements, byte for byte: the same generated records, with transfers, unpaired
taps, passback refusals, codes brought back under new record ids and records uploaded after a first clearing,
go into an app on SQLite and an app on real PostgreSQL sharing one key store; each clears the day; the CSVs,
their SHA-256 and every figure of the statements are equal, and equal the recomputation from the journeys."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from codeservice.transit.clearing import csv_rows, run_clearing, statement_json
from codeservice.transit.clearing_sql import insert_trips
from codeservice.transit.models import Operator, Trip
from codeservice.transit.service import ingest_records, rules_of
from issuers.rides import issue_credential, make_ride_code
from sdk.citytime import service_day
from sdk.claims import subject_from_text
from tests.conftest import clear_database, make_settings
from tests.test_clearing import CST, STATIONS, Generator, _gate_client, transit_key_of_old

OPERATORS = ("qd-metro", "qd-bus", "laoshan")


@pytest.fixture
def two_apps(tmp_path: Path, postgres_database: str):  # type: ignore[no-untyped-def]
    """(SQLite services, PostgreSQL services), each with its own home and keys."""
    from codeservice.app import create_app

    apps = [create_app(make_settings(tmp_path / "lite", f"sqlite:///{tmp_path / 'citycode.sqlite3'}")),
            create_app(make_settings(tmp_path / "pg", postgres_database))]
    services = [app.extensions["citycode"] for app in apps]
    for svc in services:
        transit_key_of_old(svc)
    yield services
    for svc in services:
        clear_database(svc.db.engine)
        svc.db.dispose()


class TwinGenerator(Generator):
    """The generator's day, each ride code made twice by the same phone key: under the first app's credential
    (``code``) and under the twin app's (``twin``), so that the same taps verify in both services."""

    def __init__(self, day: dt.date, seed: int, services, twin) -> None:  # type: ignore[no-untyped-def]
        super().__init__(day, seed, services)
        self.twin = twin
        self.twin_credentials: dict[str, bytes] = {}

    def prove(self, rec: dict, at: float) -> dict:
        proof = super().prove(rec, at)
        key, _credential = self.phones[rec["account"]]
        if rec["account"] not in self.twin_credentials:
            start = dt.datetime.combine(self.day, dt.time(3, 0), CST).timestamp()
            self.twin_credentials[rec["account"]] = issue_credential(
                self.twin.keyring.signer("city-transit"), account=subject_from_text(rec["account"]),
                device_key=key.public_key(), card_type=rec["card_type"], fare_limit=rec["fare_limit"],
                status_index=len(self.twin_credentials), validity=60, lifetime=2 * 86400, now=start)
        code = make_ride_code(key, self.twin_credentials[rec["account"]], now=at)
        twin = self.twin.evidence_verifier().evidence(code, at=at)
        assert twin.accepted, twin.detail
        return {**proof, "twin": {"credential_id": twin.credential_id, "code_id": twin.code_id, "code": code}}


def as_sent_to(records: list[dict], twin: bool) -> list[dict]:
    """The records as the gates send them to the first app or to the twin."""
    out = []
    for rec in records:
        rec = dict(rec)
        other = rec.pop("twin", None)
        if twin and other is not None:
            rec.update(other)
        out.append(rec)
    return out


def _awkward_taps(gen: Generator) -> None:
    """Taps that try the pairing's edges: an exit exactly at the longest trip and one a second after, two
    entries in a row, an exit at a station off the network, taps at the same moment, passback refusals."""
    rider = {"account": "edgeedgeedgeedge", "card_type": "student", "fare_limit": 2000}
    a, b = STATIONS[0], STATIONS[-1]
    t0 = 100.0
    gen.record("qd-metro", gen.at(t0), station=a, direction="in", **rider)
    gen.record("qd-metro", gen.at(t0 + 240), station=b, direction="out", **rider)  # 240 minutes: paired
    gen.record("qd-metro", gen.at(t0 + 300), station=a, direction="in", **rider)
    gen.record("qd-metro", gen.at(t0 + 540) + 1, station=b, direction="out", **rider)  # one second too late
    gen.record("qd-metro", gen.at(t0 + 600), station=a, direction="in", **rider)
    gen.record("qd-metro", gen.at(t0 + 601), station=a, direction="in", **rider)  # entered twice
    gen.record("qd-metro", gen.at(t0 + 602), station=a, direction="in", accepted=False, reason="passback", **rider)
    gen.record("qd-metro", gen.at(t0 + 630), station="nowhere", direction="out", **rider)  # off the network
    same = gen.at(t0 + 700)
    first, second = sorted(uuid.uuid4().hex for _ in range(2))
    gen.record("qd-metro", same, station=a, direction="in", record_id=first, **rider)
    gen.record("qd-metro", same, station=b, direction="out", record_id=second, **rider)  # same moment: id decides
    gen.record("qd-metro", gen.at(t0 + 710), station=b, direction=None, **rider)  # no direction: not a tap
    gen.record("qd-metro", gen.at(t0 + 720), station=a, kind="cert", account=None)  # no account: unbillable


def _upload_each(services, records: dict[str, list[dict]], first: dict[str, int], *, late: bool) -> None:
    for twin, svc in enumerate(services):
        for operator in OPERATORS:
            part = records[operator][first[operator]:] if late else records[operator][:first[operator]]
            gate = _gate_client(svc, operator)
            for i in range(0, len(part), 400):
                with svc.db.session() as s:
                    result = ingest_records(s, gate, as_sent_to(part[i:i + 400], bool(twin)),
                                            dt.datetime.now(CST).timestamp(), svc.evidence_verifier())
                    assert not result.rejected, result.rejected[:3]


def _statements(svc, day: dt.date) -> dict[str, tuple[dict, bytes]]:
    out = {}
    for operator in OPERATORS:
        with svc.db.session() as s:
            statement = run_clearing(s, operator, day)
            operator_row = s.get(Operator, operator)
            summary = statement_json(statement, operator_row)
            from codeservice.transit.clearing import trips_of_day

            exported = "".join(csv_rows(operator, day, trips_of_day(s, operator, day))).encode()
        summary.pop("computed_at")
        out[operator] = (summary, exported)
    return out


def test_clearing_in_postgresql_gives_the_same_statements_as_clearing_in_python(two_apps):
    sqlite_services, postgres_services = two_apps
    assert sqlite_services.db.engine.dialect.name == "sqlite"
    assert postgres_services.db.engine.dialect.name == "postgresql"
    day = dt.date.fromisoformat(service_day(dt.datetime.now(CST).timestamp())) - dt.timedelta(days=2)
    gen = TwinGenerator(day, seed=909, services=sqlite_services, twin=postgres_services)
    gen.metro_day(riders=500)
    gen.bus_day(rides=400)
    gen.scenic_day(entries=150)
    gen.other_days()
    _awkward_taps(gen)
    rng = random.Random(3)
    records = {operator: list(gen.records[operator]) for operator in OPERATORS}
    for operator in OPERATORS:
        rng.shuffle(records[operator])
        # the same ride code brought back under new record ids: charged once, counted as duplicates
        copies = [{**rec, "record_id": uuid.uuid4().hex} for rec in rng.sample(records[operator], 12)
                  if rec["accepted"] and "code" in rec]
        records[operator].extend(copies)
    first = {operator: len(records[operator]) * 4 // 5 for operator in OPERATORS}
    _upload_each(two_apps, records, first, late=False)
    early = [_statements(svc, day) for svc in two_apps]
    assert early[0] == early[1]
    # the late gates: the rest of the day arrives after a first clearing, which is run again
    _upload_each(two_apps, records, first, late=True)
    in_python, in_postgresql = (_statements(svc, day) for svc in two_apps)
    for operator in OPERATORS:
        python_summary, python_csv = in_python[operator]
        sql_summary, sql_csv = in_postgresql[operator]
        assert sql_csv == python_csv, operator
        assert hashlib.sha256(sql_csv).hexdigest() == sql_summary["digest"] == python_summary["digest"]
        assert sql_summary == python_summary
        assert sql_summary["duplicates"] > 0
        expected = gen.expected[operator]
        if operator != "qd-metro":  # the awkward taps are not in the generator's expectations
            assert sql_summary["charged_total"] == expected["charged"]
            assert sql_summary["trips"] == expected["trips"]
    metro = in_postgresql["qd-metro"][0]
    assert metro["by_status"]["paired"] > 300 and metro["by_status"]["unpaired_entry"] > 20
    assert metro["by_status"]["unpaired_exit"] > 10
    assert early[1]["qd-metro"][0]["records"] < metro["records"]  # the late records were taken


def test_the_awkward_taps_are_cleared_as_the_rules_say_in_postgresql(two_apps):
    _sqlite_services, postgres_services = two_apps
    day = dt.date.fromisoformat(service_day(dt.datetime.now(CST).timestamp())) - dt.timedelta(days=4)
    gen = Generator(day, seed=11, services=postgres_services)
    _awkward_taps(gen)
    _upload_each([postgres_services], {o: gen.records[o] for o in OPERATORS}, dict.fromkeys(OPERATORS, 0), late=True)
    with postgres_services.db.session() as s:
        statement = run_clearing(s, "qd-metro", day)
        trips = s.execute(sa.select(Trip.status, Trip.origin, Trip.destination, Trip.fare)
                          .where(Trip.operator_id == "qd-metro", Trip.service_day == day)
                          .order_by(Trip.started_at, Trip.status)).all()
        rules = rules_of(s.get(Operator, "qd-metro"))
    a, b = STATIONS[0], STATIONS[-1]
    assert statement.by_status == {"paired": 3, "unpaired_entry": 2, "unpaired_exit": 1, "unbillable": 1}
    assert trips == [("paired", a, b, rules.metro_fare(a, b)), ("unpaired_entry", a, None, rules.max_fare),
                     ("unpaired_exit", b, None, rules.max_fare), ("unpaired_entry", a, None, rules.max_fare),
                     ("paired", a, "nowhere", rules.max_fare), ("paired", a, b, rules.metro_fare(a, b)),
                     ("unbillable", a, None, 0)]


def test_the_sql_path_refuses_sqlite():
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn, pytest.raises(sa.exc.OperationalError):
        from sqlalchemy.orm import Session

        from codeservice.transit.fares import load_rules

        insert_trips(Session(bind=conn), "x", dt.date(2026, 1, 1),
                     load_rules("bus", {"lines": {"1": 100}, "default": 100}, {}))
