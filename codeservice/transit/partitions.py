"""Gate records and trips partitioned by operating day on PostgreSQL (migration 0015): one partition a day.

``gate_records`` and ``trips`` are ``PARTITION BY RANGE (service_day)``; the partition of day D is
``gate_records_pYYYYMMDD`` (``trips_pYYYYMMDD``), holding ``service_day >= D AND service_day < D + 1``. A day's
clearing reads and writes one partition of each; an old day is dropped or detached whole (``DROP TABLE`` /
``ALTER TABLE ... DETACH PARTITION``) instead of deleted row by row.

Partitions are made ahead and on demand, with no default partition:

- ahead: :func:`ensure_partitions` for today and the next days when the service starts (``Services``) and by
  ``citycode transit partitions --ahead N``;
- on demand: the upload path calls :func:`ensure_days` with the days of a batch before it reads or writes
  ``gate_records``; a day that has no partition yet (a gate's late upload of a day before the service made
  partitions, a clock on the day after) gets it then, both tables at once, so that no record is ever refused for
  want of a partition. A record's day is bounded by the upload's check of ``at`` (the last 90 days to one day
  ahead), so a gate cannot make partitions for arbitrary days.

Why no default partition: PostgreSQL refuses to create the partition of a day while the default partition holds a
row of that day (and scans the default partition to check), so a default partition that ever caught a row would
block the day's own partition until its rows were moved by hand; on-demand creation keeps every row in its day's
partition, where pruning and dropping whole days work.

The DDL runs in a connection of its own (autocommit), under an advisory lock, with ``IF NOT EXISTS`` and a lock
timeout: creating a partition takes a short exclusive lock on the parent table, so it must not wait inside a
transaction that already reads the table. SQLite (the embedded default) keeps plain tables: every function here
does nothing there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

#: The tables partitioned by ``service_day``.
TABLES = ("gate_records", "trips")
#: Days made ahead (today included) when the service starts.
DAYS_AHEAD = 7
#: An advisory lock key of this module's DDL ("cc-part" as a number).
_LOCK = 0x63632D70617274
#: (database URL, day) pairs known to have both partitions in this process: the upload path asks nothing then.
_known: set[tuple[str, dt.date]] = set()


def partition_name(table: str, day: dt.date) -> str:
    """The partition of *table* holding *day*: ``gate_records_p20261207``."""
    if table not in TABLES:
        raise ValueError(f"not a partitioned table: {table}")
    return f"{table}_p{day:%Y%m%d}"


def is_partitioned(connection: Connection) -> bool:
    """Whether ``gate_records`` is a partitioned table here (PostgreSQL after migration 0015)."""
    if connection.dialect.name != "postgresql":
        return False
    return bool(connection.scalar(text(
        "SELECT count(*) FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
        "WHERE c.relname = 'gate_records' AND c.relnamespace = current_schema()::regnamespace")))


def existing_days(connection: Connection, table: str = "gate_records") -> set[dt.date]:
    """The days that have a partition of *table*."""
    names = connection.scalars(text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :table "
        "AND p.relnamespace = current_schema()::regnamespace"), {"table": table})
    prefix = f"{table}_p"
    return {dt.datetime.strptime(name[len(prefix):], "%Y%m%d").date() for name in names
            if name.startswith(prefix) and len(name) == len(prefix) + 8}


def create_partitions(connection: Connection, days: Iterable[dt.date]) -> list[str]:
    """Create the missing partitions of both tables for *days* on *connection*, in its transaction (a migration's;
    elsewhere use :func:`ensure_days`, which takes a connection of its own); the names created."""
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK})
    created = []
    for table in TABLES:
        have = existing_days(connection, table)
        for day in sorted(set(days) - have):
            name = partition_name(table, day)
            connection.execute(text(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                f"FOR VALUES FROM ('{day.isoformat()}') TO ('{(day + dt.timedelta(days=1)).isoformat()}')"))
            created.append(name)
    return created


def ensure_partitions(engine: Engine, first_day: dt.date, days_ahead: int = DAYS_AHEAD) -> list[str]:
    """Make the partitions of *first_day* and the *days_ahead* - 1 days after it (both tables); the names created
    (none on SQLite, none when they exist)."""
    return _ensure(engine, [first_day + dt.timedelta(days=n) for n in range(max(days_ahead, 1))])


def ensure_days(session: Session, days: Iterable[dt.date]) -> list[str]:
    """Make sure the days of a batch of records have their partitions, before the session reads or writes the
    partitioned tables; the names created. Days already seen in this process cost nothing."""
    bind = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    if not isinstance(engine, Engine) or engine.dialect.name != "postgresql":
        return []
    url = str(engine.url)
    wanted = [day for day in set(days) if (url, day) not in _known]
    if not wanted:
        return []
    return _ensure(engine, wanted)


def _ensure(engine: Engine, days: list[dt.date]) -> list[str]:
    if engine.dialect.name != "postgresql":
        return []
    url = str(engine.url)
    with engine.connect() as connection:
        if not is_partitioned(connection):
            connection.rollback()
            return []
        connection.execute(text("SET LOCAL lock_timeout = '10s'"))
        created = create_partitions(connection, days)
        connection.commit()
    _known.update((url, day) for day in days)
    return created


def forget() -> None:
    """Forget the days known to have partitions (after a migration dropped them: tests)."""
    _known.clear()
