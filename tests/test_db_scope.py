"""One pooled connection a request: sessions that follow one another share it, each with its own transaction;
a session opened inside another takes its own connection, so that its commit is its own."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from codeservice.db import Database
from codeservice.services import Services
from tests.conftest import make_settings


@pytest.fixture
def db(tmp_path, database_url):
    services = Services(make_settings(tmp_path / "home", database_url, demo_data="false"))
    services.initialise()
    with services.db.session() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS scope_probe (n INTEGER)"))
        s.execute(text("DELETE FROM scope_probe"))
    yield services.db
    with services.db.session() as s:
        s.execute(text("DROP TABLE scope_probe"))
    services.db.dispose()


def _connection_of(session) -> object:
    return session.connection().connection.dbapi_connection


def test_sessions_one_after_another_in_a_scope_share_one_connection_each_committing(db: Database):
    with db.scope():
        with db.session() as s:
            first = _connection_of(s)
            s.execute(text("INSERT INTO scope_probe VALUES (1)"))
        with db.session() as s:
            assert _connection_of(s) is first
            s.execute(text("INSERT INTO scope_probe VALUES (2)"))
        with pytest.raises(RuntimeError), db.session() as s:
            s.execute(text("INSERT INTO scope_probe VALUES (3)"))
            raise RuntimeError("the view failed")
        with db.session() as s:
            assert _connection_of(s) is first
    with db.session() as s:  # outside the scope: what was committed stayed, the failed one's insert did not
        assert sorted(n for (n,) in s.execute(text("SELECT n FROM scope_probe"))) == [1, 2]


def test_a_session_inside_another_commits_on_its_own_connection(db: Database):
    with db.scope(), pytest.raises(RuntimeError), db.session() as outer:
        outer.execute(text("SELECT count(*) FROM scope_probe"))  # (an outer writer would lock SQLite's inner one out)
        with db.session() as inner:  # a refusal logged before the outer work fails, say
            assert _connection_of(inner) is not _connection_of(outer)
            inner.execute(text("INSERT INTO scope_probe VALUES (2)"))
        raise RuntimeError("the outer work failed")
    with db.session() as s:
        assert [n for (n,) in s.execute(text("SELECT n FROM scope_probe"))] == [2]


def test_the_scope_returns_its_connection_to_the_pool(db: Database):
    pool = db.engine.pool
    before = pool.checkedout()
    with db.scope():
        with db.session() as s:
            s.execute(text("SELECT 1"))
        assert pool.checkedout() == before + 1
    assert pool.checkedout() == before
