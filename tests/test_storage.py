"""The storage layer on SQLite (embedded default) and on PostgreSQL, through Alembic migrations."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from codeservice.db import Database, include_name, migrate
from codeservice.identity.models import Resident
from codeservice.identity.residents import add_resident, ensure_demo_residents, get_resident, list_residents
from codeservice.models import Base
from sdk.claims import subject_from_text
from tests.conftest import clear_database, throwaway_postgres_database


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    migrate(database.engine)
    clear_database(database.engine)
    yield database
    clear_database(database.engine)
    database.dispose()


def test_migrations_create_the_schema_the_models_describe(db):
    inspector = inspect(db.engine)
    for table in Base.metadata.tables.values():
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_migrations_and_models_agree_on_types_indexes_and_keys(db):
    """Alembic's own comparison: nothing to autogenerate means the migrations are the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": include_name})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_migrate_is_idempotent(db):
    migrate(db.engine)
    migrate(db.engine)


def test_resident_gets_a_random_pseudonymous_id_and_is_found_by_it(db):
    with db.session() as s:
        resident = add_resident(s, "Chen Jie", dt.date(1960, 5, 1))
        pid = resident.pid
    assert len(subject_from_text(pid)) == 10
    with db.session() as s:
        found = get_resident(s, pid)
        assert found is not None and found.display_name == "Chen Jie" and found.birth_date == dt.date(1960, 5, 1)
        assert get_resident(s, "not-a-pid") is None
        assert get_resident(s, pid[:-1] + ("a" if pid[-1] != "a" else "b")) is None


def test_pseudonymous_ids_differ_between_residents(db):
    with db.session() as s:
        pids = {add_resident(s, f"R{i}").pid for i in range(50)}
    assert len(pids) == 50


def test_pid_is_unique_in_the_database(db):
    with db.session() as s:
        pid = add_resident(s, "A").pid
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Resident(pid=pid))
        s.flush()


def test_failed_transaction_leaves_nothing_behind(db):
    with pytest.raises(RuntimeError), db.session() as s:
        add_resident(s, "Ghost")
        raise RuntimeError("abort")
    with db.session() as s:
        assert [r for r in list_residents(s) if r.display_name == "Ghost"] == []


def test_demo_residents_are_created_once(db):
    with db.session() as s:
        first = [r.pid for r in ensure_demo_residents(s)]
    with db.session() as s:
        second = [r.pid for r in ensure_demo_residents(s)]
    assert first == second and len(first) == 3


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """A database of its own with no schema (the shared PostgreSQL test database is at the newest revision)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.sqlite3'}"
        return
    with throwaway_postgres_database("citycode_migration") as url:
        yield url


def test_migration_0006_keys_stored_codes_and_makes_later_copies_duplicates_of_the_first(empty_database_url):
    """Records stored before 0006 get the key of the code they carry; of the records that share one, the first
    received stays the charged one and the others become its duplicates, so that clearing again charges once."""
    import sqlalchemy as sa
    from alembic import command

    from codeservice.db import alembic_config
    from codeservice.transit.service import code_key

    database = Database(empty_database_url)
    try:
        with database.engine.begin() as conn:
            cfg = alembic_config(empty_database_url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0005")
        t0 = dt.datetime(2026, 11, 27, 4, 30, tzinfo=dt.UTC)
        ride, identity = "00112233aabbccdd" + "ab" * 8, "cd" * 16

        def record(record_id, minutes, kind="ride", code_id=ride, evidence="CC1:...", accepted=True):
            return {"record_id": record_id, "device_id": 1, "operator_id": "qd-bus", "gate_id": "g", "scene": "bus",
                    "at": t0, "service_day": dt.date(2026, 11, 27), "accepted": accepted,
                    "reason": "ok" if accepted else "replayed", "kind": kind, "code_id": code_id, "online": False,
                    "received_at": t0 + dt.timedelta(minutes=minutes), "evidence": evidence}

        rows = [record("b" * 32, 5), record("a" * 32, 1), record("c" * 32, 1), record("d" * 32, 2, "id", identity),
                record("e" * 32, 0, evidence=None, accepted=False)]
        with database.engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO operators (id, name, kind, fares, discounts) "
                                 "VALUES ('qd-bus', 'Bus', 'bus', '{}', '{}')"))
            conn.execute(sa.text("INSERT INTO api_clients (id, name, role, key_hash, allowed_types, "
                                 "allowed_predicates, active, rate_per_minute, operator_id) VALUES "
                                 "(1, 'gate', 'device', 'h', '[]', '[]', true, 60, 'qd-bus')"))
            records = sa.Table("gate_records", sa.MetaData(), autoload_with=conn)
            conn.execute(records.insert(), rows)
            conn.execute(sa.text("INSERT INTO clearing_statements (operator_id, service_day, records, trips, "
                                 "fare_total, discount_total, capped_total, charged_total, by_status, by_card_type, "
                                 "digest, computed_at) VALUES ('qd-bus', '2026-11-27', 4, 4, 0, 0, 0, 0, '{}', '{}', "
                                 "'x', '2026-11-28 00:00:00+00')"))
        migrate(database.engine)
        with database.engine.connect() as conn:
            held = {r.record_id: (r.code_key, r.duplicate_of) for r in conn.execute(
                sa.text("SELECT record_id, code_key, duplicate_of FROM gate_records"))}
            assert conn.scalar(sa.text("SELECT duplicates FROM clearing_statements")) == 0
        first = "a" * 32  # received first (with c...: the smaller record id)
        assert held == {first: (code_key("ride", ride), None), "c" * 32: (code_key("ride", ride), first),
                        "b" * 32: (code_key("ride", ride), first), "d" * 32: (code_key("id", identity), None),
                        "e" * 32: (None, None)}
        with database.engine.begin() as conn, pytest.raises(IntegrityError):  # one charged record a code
            conn.execute(sa.text(f"UPDATE gate_records SET duplicate_of = NULL WHERE record_id = '{'b' * 32}'"))
        with database.engine.begin() as conn:  # and back
            cfg = alembic_config(empty_database_url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
            assert "code_key" not in {c["name"] for c in inspect(conn).get_columns("gate_records")}
        migrate(database.engine)
    finally:
        database.dispose()
