"""Gate records and trips partitioned by operating day on PostgreSQL (migration 0015,
codeservice/transit/partitions.py): made ahead when the service starts and by ``citycode transit partitions``,
on demand for a record of a day without one; a gate's retry still comes back duplicate, a code's copy still
names its original; the migration moves the rows both ways; one Alembic head."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from codeservice.db import Database, alembic_config, migrate
from codeservice.transit import partitions
from codeservice.transit.clearing import run_clearing
from codeservice.transit.service import ingest_records
from sdk.citytime import service_day
from tests.conftest import throwaway_postgres_database
from tests.test_clearing import CST, Generator, _gate_client, transit_key_of_old


@pytest.fixture
def database_url(postgres_database: str) -> str:
    """These tests are about PostgreSQL's partitions: the app on PostgreSQL only."""
    return postgres_database


@pytest.fixture
def services(web_app):  # type: ignore[no-untyped-def]
    services = web_app.extensions["citycode"]
    transit_key_of_old(services)
    return services


def today() -> dt.date:
    return dt.date.fromisoformat(service_day(dt.datetime.now(CST).timestamp()))


def partition_of(services, table: str, key_column: str, key: object) -> str:  # type: ignore[no-untyped-def]
    with services.db.engine.connect() as conn:
        return str(conn.scalar(sa.text(f"SELECT tableoid::regclass::text FROM {table} WHERE {key_column} = :k"),
                               {"k": key}))


def upload(services, gate, records):  # type: ignore[no-untyped-def]
    with services.db.session() as s:
        return ingest_records(s, gate, records, dt.datetime.now(CST).timestamp(), services.evidence_verifier())


def test_the_started_service_has_partitions_from_yesterday_to_the_days_ahead(services):
    with services.db.engine.connect() as conn:
        assert partitions.is_partitioned(conn)
        wanted = {today() + dt.timedelta(days=n) for n in range(-1, partitions.DAYS_AHEAD)}
        for table in partitions.TABLES:
            assert wanted <= partitions.existing_days(conn, table), table
            kind = conn.scalar(sa.text("SELECT relkind FROM pg_class WHERE relname = :t"), {"t": table})
            assert kind == "p"


def test_a_record_of_a_day_without_a_partition_is_stored_in_a_partition_made_for_it(services):
    day = today() - dt.timedelta(days=5)  # older than the partitions made at start
    with services.db.engine.begin() as conn:  # as if the partitions of that day had never been made
        for table in partitions.TABLES:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {partitions.partition_name(table, day)}"))
    partitions.forget()
    gen = Generator(day, seed=9, services=services)
    gen.bus_day(rides=5)
    gate = _gate_client(services, "qd-bus")
    result = upload(services, gate, gen.records["qd-bus"])
    assert len(result.stored) == 5 and not result.rejected
    first = gen.records["qd-bus"][0]["record_id"]
    assert partition_of(services, "gate_records", "record_id", first) == partitions.partition_name("gate_records", day)
    with services.db.session() as s:
        statement = run_clearing(s, "qd-bus", day)
    assert statement.trips == 5 and statement.charged_total == gen.expected["qd-bus"]["charged"]
    with services.db.engine.connect() as conn:
        held = conn.execute(sa.text("SELECT DISTINCT tableoid::regclass::text FROM trips WHERE service_day = :d"),
                            {"d": day}).scalars().all()
    assert held == [partitions.partition_name("trips", day)]


def test_a_gates_retry_of_the_same_records_comes_back_duplicate_and_a_copy_names_its_original(services):
    day = today() - dt.timedelta(days=1)
    gen = Generator(day, seed=11, services=services)
    gen.bus_day(rides=6)
    records = gen.records["qd-bus"]
    gate = _gate_client(services, "qd-bus")
    first = upload(services, gate, records)
    assert len(first.stored) == 6 and not first.duplicates
    again = upload(services, gate, records)  # the gate's retry after a timeout: same ids, same days
    assert not again.stored and sorted(again.duplicates) == sorted(r["record_id"] for r in records)
    copy = {**records[0], "record_id": uuid.uuid4().hex}  # the same code under a new record id
    copied = upload(services, gate, [copy])
    assert copied.duplicates == [copy["record_id"]]
    assert copied.code_duplicates == [{"record_id": copy["record_id"], "duplicate_of": records[0]["record_id"]}]
    with services.db.engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT count(*) FROM gate_records WHERE service_day = :d"), {"d": day}) == 7
    with services.db.session() as s:
        statement = run_clearing(s, "qd-bus", day)
    assert (statement.records, statement.duplicates, statement.trips) == (6, 1, 6)


def test_a_code_copied_across_the_day_boundary_is_still_a_duplicate(services):
    """The code-key index holds the day (a partitioned table's unique index must); the upload path looks the key
    up across every day, so a copy of a code scanned just after 04:00 names the ride just before."""
    day = today() - dt.timedelta(days=2)
    gen = Generator(day, seed=13, services=services)
    boundary = gen.at(24 * 60)  # 04:00 of the next day
    ride = gen.record("qd-bus", boundary - 5, line="1", account="crossdaycrossday", card_type="adult",
                      fare_limit=2000, scene="bus")
    gate = _gate_client(services, "qd-bus")
    assert upload(services, gate, [ride]).stored == [ride["record_id"]]
    late = {**ride, "record_id": uuid.uuid4().hex, "at": boundary + 5}
    result = upload(services, gate, [late])
    assert result.duplicates == [late["record_id"]], result
    assert partition_of(services, "gate_records", "record_id", late["record_id"]) == \
        partitions.partition_name("gate_records", day + dt.timedelta(days=1))


def test_ensure_partitions_makes_the_days_ahead_once(services):
    start = today() + dt.timedelta(days=40)
    made = partitions.ensure_partitions(services.db.engine, start, 3)
    assert sorted(made) == sorted(partitions.partition_name(t, start + dt.timedelta(days=n))
                                  for t in partitions.TABLES for n in range(3))
    assert partitions.ensure_partitions(services.db.engine, start, 3) == []


def test_citycode_transit_partitions_makes_the_days_ahead(tmp_path: Path, postgres_database: str):
    env = {**os.environ, "CITYCODE_HOME": str(tmp_path / "home"), "CITYCODE_DATABASE_URL": postgres_database}
    start = today() + dt.timedelta(days=60)
    out = subprocess.run([sys.executable, "-m", "codeservice.cli.main", "transit", "partitions", "--ahead", "2",
                          "--from", start.isoformat()], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["partitioned"] is True and answer["ahead"] == 2
    assert {start.isoformat(), (start + dt.timedelta(days=1)).isoformat()} <= set(answer["days"])
    assert partitions.partition_name("trips", start) in answer["created"]


def test_alembic_has_one_head_and_it_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    newest = max(p.name[:4] for p in (Path(__file__).parent.parent / "codeservice/migrations/versions").glob("0*.py"))
    assert heads == [newest]


def test_migration_0015_moves_the_rows_into_day_partitions_and_back():
    from alembic import command

    with throwaway_postgres_database("citycode_partition") as url:
        database = Database(url)
        try:
            cfg = alembic_config(url)
            with database.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0014")
            days = [dt.date(2026, 11, 27), dt.date(2026, 11, 28)]
            t0 = dt.datetime(2026, 11, 27, 4, 30, tzinfo=dt.UTC)
            rows = []
            for n in range(6):
                day = days[n % 2]
                rows.append({"record_id": f"{n:032x}", "device_id": 1, "operator_id": "qd-bus", "gate_id": "g",
                             "scene": "bus", "at": t0 + dt.timedelta(days=n % 2), "service_day": day,
                             "accepted": True, "reason": "ok", "kind": "ride", "code_id": f"{n:x}", "online": False,
                             "received_at": t0, "code_key": f"{n:064x}", "duplicate_of": None})
            rows.append({**rows[0], "record_id": "f" * 32, "duplicate_of": rows[0]["record_id"]})  # a copy
            with database.engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO operators (id, name, kind, fares, discounts) "
                                     "VALUES ('qd-bus', 'Bus', 'bus', '{}', '{}')"))
                conn.execute(sa.text("INSERT INTO api_clients (id, name, role, key_hash, allowed_types, "
                                     "allowed_predicates, active, rate_per_minute, operator_id) VALUES "
                                     "(1, 'gate', 'device', 'h', '[]', '[]', true, 60, 'qd-bus')"))
                records = sa.Table("gate_records", sa.MetaData(), autoload_with=conn)
                conn.execute(records.insert(), rows)
                conn.execute(sa.text(
                    "INSERT INTO trips (operator_id, service_day, status, started_at, fare, discount, capped, "
                    "charged) VALUES ('qd-bus', '2026-11-27', 'ride', now(), 200, 0, 0, 200), "
                    "('qd-bus', '2026-11-28', 'ride', now(), 200, 0, 0, 200)"))

            def snapshot() -> tuple[list, list]:
                with database.engine.connect() as conn:
                    return (conn.execute(sa.text("SELECT record_id, service_day, duplicate_of FROM gate_records "
                                                 "ORDER BY record_id")).all(),
                            conn.execute(sa.text("SELECT id, service_day FROM trips ORDER BY id")).all())

            before = snapshot()
            migrate(database.engine)
            assert snapshot() == before
            with database.engine.connect() as conn:
                assert partitions.is_partitioned(conn)
                assert partitions.existing_days(conn, "gate_records") == set(days)
                assert partitions.existing_days(conn, "trips") == set(days)
                where = dict(conn.execute(sa.text("SELECT service_day, count(*) FROM gate_records_p20261128 "
                                                  "GROUP BY service_day")).all())
                assert where == {days[1]: 3}
            with database.engine.begin() as conn:  # the same record again conflicts; one charged record a code
                inserted = conn.execute(sa.text(
                    "INSERT INTO gate_records SELECT * FROM gate_records WHERE record_id = :r "
                    "ON CONFLICT DO NOTHING RETURNING record_id"), {"r": rows[1]["record_id"]}).all()
                assert inserted == []
            with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as conn:
                conn.execute(sa.text("UPDATE gate_records SET duplicate_of = NULL WHERE record_id = :r"),
                             {"r": "f" * 32})
            with database.engine.begin() as conn:  # a new trip takes the next id of the same sequence
                new_id = conn.scalar(sa.text(
                    "INSERT INTO trips (operator_id, service_day, status, started_at, fare, discount, capped, "
                    "charged) VALUES ('qd-bus', '2026-11-28', 'ride', now(), 1, 0, 0, 1) RETURNING id"))
                assert new_id == max(t.id for t in before[1]) + 1
                conn.execute(sa.text("DELETE FROM trips WHERE id = :i"), {"i": new_id})
            with database.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "0014")
            assert snapshot() == before
            with database.engine.connect() as conn:
                assert not partitions.is_partitioned(conn)
                assert conn.scalar(sa.text("SELECT relkind FROM pg_class WHERE relname = 'gate_records'")) == "r"
                keys = {fk["name"] for fk in sa.inspect(conn).get_foreign_keys("gate_records")}
                assert "fk_gate_records_duplicate_of" in keys
            migrate(database.engine)  # and up again
            assert snapshot() == before
        finally:
            partitions.forget()
            database.dispose()
