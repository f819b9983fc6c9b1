"""Database engine, sessions and migrations (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

from codeservice import tables

MIGRATIONS = Path(__file__).parent / "migrations"
#: Every domain's tables, which Alembic compares and which a reference across domains looks up by name.
METADATA = tables.metadata


#: The partitions of the tables partitioned by day on PostgreSQL (codeservice/transit/partitions.py): made by the
#: service, not by the models, so that Alembic's comparison leaves them out (``include_name``).
_PARTITION = re.compile(r"(gate_records|trips)_p[0-9]{8}")


def include_name(name: str | None, type_: Any, parent_names: MutableMapping[Any, str | None]) -> bool:
    """Alembic's ``include_name``: every table but a day's partition (its indexes go with it)."""
    if type_ == "table" and name is not None:
        return _PARTITION.fullmatch(name) is None
    return True


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


def alembic_config(url: str) -> Config:
    # Alembic is imported here, not at the top: only a migration needs it, and it is a tenth of a second of
    # every 'citycode' command's start.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command  # see alembic_config

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_is_current(engine: Engine) -> bool:
    return "alembic_version" in inspect(engine).get_table_names()


@dataclass
class _Held:
    """The connection a scope's sessions take their turns on; ``busy`` while a session has it."""

    connection: Connection | None = None
    busy: bool = False


class Database:
    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._scope: ContextVar[_Held | None] = ContextVar(f"citycode-db-scope-{id(self)}", default=None)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error.

        Inside ``scope`` (an HTTP request), sessions that follow one another share one pooled connection, each
        still in a transaction of its own; a session opened while another is open takes a connection of its own,
        so that its commit stays its own."""
        held = self._scope.get()
        if held is None or held.busy:
            with self._sessions() as session, session.begin():
                yield session
            return
        if held.connection is None or held.connection.invalidated:
            held.connection = self.engine.connect()
        elif held.connection.in_transaction():
            held.connection.rollback()  # nothing of a finished session's is left open (a failed commit's, say)
        held.busy = True
        try:
            with self._sessions(bind=held.connection) as session, session.begin():
                yield session
        finally:
            held.busy = False

    def open_scope(self) -> Token[_Held | None]:
        """Begin a scope (see ``session``): the connection is taken from the pool when a session first needs it."""
        return self._scope.set(_Held())

    def close_scope(self, token: Token[_Held | None]) -> None:
        """End the scope: its connection goes back to the pool (rolled back, as any connection returned is)."""
        held = self._scope.get()
        self._scope.reset(token)
        if held is not None and held.connection is not None:
            held.connection.close()

    @contextmanager
    def scope(self) -> Iterator[None]:
        token = self.open_scope()
        try:
            yield
        finally:
            self.close_scope(token)

    def dispose(self) -> None:
        self.engine.dispose()
