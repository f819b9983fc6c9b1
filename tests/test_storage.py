"""The storage layer on SQLite (embedded default) and on PostgreSQL, through Alembic migrations."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from codeservice.db import Database, migrate
from codeservice.identity.models import Resident
from codeservice.identity.residents import add_resident, ensure_demo_residents, get_resident, list_residents
from codeservice.models import Base
from sdk.claims import subject_from_text
from tests.conftest import clear_database


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
        context = MigrationContext.configure(conn, opts={"compare_type": True})
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
