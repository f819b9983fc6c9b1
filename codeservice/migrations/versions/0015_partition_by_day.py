"""gate records and trips partitioned by operating day on PostgreSQL (codeservice/transit/partitions.py)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

PostgreSQL: each table is rebuilt as ``PARTITION BY RANGE (service_day)`` with its rows in place: the
partitioned table is created with the same columns (``LIKE ... INCLUDING DEFAULTS``), one partition for every day
the rows hold, the rows are moved (``INSERT ... SELECT``), the old table is dropped and the new one takes its
name, then the keys and indexes are made again with their old names. A unique index of a partitioned table must
hold the partition key, so:

- ``gate_records``' primary key is ``(record_id, service_day)`` and the one-charged-record-a-code index is
  ``(code_key, service_day) WHERE duplicate_of IS NULL``. A record always has the same ``service_day`` (it is
  the operating day of the record's own ``at``, which a gate's retry sends unchanged), so a retry still conflicts
  with the stored record; the upload path still finds a record id and a code key across every day before it
  inserts (codeservice/transit/service.py), the indexes are the guard against concurrent uploads of one day;
- the self reference ``duplicate_of -> gate_records.record_id`` is dropped (a foreign key to a partitioned table
  must name the partition key too, and a copy of a code may fall on the day after its original): the upload
  path sets ``duplicate_of`` only to a stored original's id;
- ``trips``' primary key is ``(id, service_day)``, its id still drawn from the same sequence.

The service makes the partitions of today and the next days when it starts, and a day's partitions on demand when
a record of that day is uploaded (codeservice/transit/partitions.py). SQLite keeps plain tables: only the code-key
index (the same columns as on PostgreSQL) and the dropped self reference change there. The downgrade puts plain
tables back with their rows, keys and indexes as 0014 left them.
"""

import contextlib
import datetime as dt
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: Index name, table, columns, WHERE (after 0014), as the models declare them; the code-key index is apart.
INDEXES = [
    ("ix_gate_records_operator_day", "gate_records", "operator_id, service_day"),
    ("ix_gate_records_operator_day_at", "gate_records", "operator_id, service_day, at"),
    ("ix_gate_records_operator_gate_day", "gate_records", "operator_id, gate_id, service_day, received_at"),
    ("ix_trips_operator_day", "trips", "operator_id, service_day"),
    ("ix_trips_account", "trips", "account"),
    ("ix_trips_operator_day_started", "trips", "operator_id, service_day, started_at"),
]
FOREIGN_KEYS = [
    ("gate_records", "device_id", "api_clients(id)"),
    ("gate_records", "operator_id", "operators(id)"),
    ("trips", "operator_id", "operators(id)"),
]


def _partition(table: str, parent: str, day: dt.date) -> str:
    return (f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {parent} FOR VALUES FROM ('{day.isoformat()}') "
            f"TO ('{(day + dt.timedelta(days=1)).isoformat()}')")


def _rebuild(partitioned: bool) -> None:
    """Rebuild both tables (PostgreSQL) as partitioned or as plain tables, rows, keys and indexes included."""
    bind = op.get_bind()
    days = sorted(bind.scalars(sa.text("SELECT service_day FROM gate_records UNION SELECT service_day FROM trips")))
    sequence = bind.scalar(sa.text("SELECT pg_get_serial_sequence('trips', 'id')"))
    for table in ("gate_records", "trips"):
        clause = " PARTITION BY RANGE (service_day)" if partitioned else ""
        op.execute(f"CREATE TABLE {table}_rebuilt (LIKE {table} INCLUDING DEFAULTS){clause}")
        if partitioned:
            for day in days:
                op.execute(_partition(table, f"{table}_rebuilt", day))
        op.execute(f"INSERT INTO {table}_rebuilt SELECT * FROM {table}")  # noqa: S608 (names of ours)
        if table == "trips" and sequence:
            op.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
        op.execute(f"DROP TABLE {table}")  # its partitions, indexes and keys with it
        op.execute(f"ALTER TABLE {table}_rebuilt RENAME TO {table}")
        if table == "trips" and sequence:
            op.execute(f"ALTER SEQUENCE {sequence} OWNED BY trips.id")
    keys = {"gate_records": "record_id, service_day", "trips": "id, service_day"} if partitioned else \
        {"gate_records": "record_id", "trips": "id"}
    for table, columns in keys.items():
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({columns})")
    for table, column, target in FOREIGN_KEYS:
        op.execute(f"ALTER TABLE {table} ADD FOREIGN KEY ({column}) REFERENCES {target}")
    if not partitioned:
        op.execute("ALTER TABLE gate_records ADD CONSTRAINT fk_gate_records_duplicate_of "
                   "FOREIGN KEY (duplicate_of) REFERENCES gate_records(record_id)")
    for name, table, columns in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    code_key = "code_key, service_day" if partitioned else "code_key"
    op.execute(f"CREATE UNIQUE INDEX uq_gate_records_code_key ON gate_records ({code_key}) "
               "WHERE duplicate_of IS NULL")
    op.execute("ANALYZE gate_records")
    op.execute("ANALYZE trips")


@contextlib.contextmanager
def _references_set_aside() -> Iterator[None]:
    """SQLite: the batch copies the table and drops the old one, whose drop deletes its rows first (foreign keys
    are on): the copies' ``duplicate_of`` are kept aside, emptied, and put back after."""
    op.execute("CREATE TEMPORARY TABLE copies_0015 AS SELECT record_id, duplicate_of FROM gate_records "
               "WHERE duplicate_of IS NOT NULL")
    op.execute("UPDATE gate_records SET duplicate_of = NULL WHERE duplicate_of IS NOT NULL")
    yield
    op.execute("UPDATE gate_records SET duplicate_of = (SELECT c.duplicate_of FROM copies_0015 c "
               "WHERE c.record_id = gate_records.record_id) "
               "WHERE record_id IN (SELECT record_id FROM copies_0015)")
    op.execute("DROP TABLE copies_0015")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=True)
        return
    op.drop_index("uq_gate_records_code_key", table_name="gate_records")
    with _references_set_aside(), op.batch_alter_table("gate_records") as batch:
        batch.drop_constraint("fk_gate_records_duplicate_of", type_="foreignkey")
    op.create_index("uq_gate_records_code_key", "gate_records", ["code_key", "service_day"], unique=True,
                    sqlite_where=sa.text("duplicate_of IS NULL"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _rebuild(partitioned=False)
        return
    op.drop_index("uq_gate_records_code_key", table_name="gate_records")
    with _references_set_aside(), op.batch_alter_table("gate_records") as batch:
        batch.create_foreign_key("fk_gate_records_duplicate_of", "gate_records", ["duplicate_of"], ["record_id"])
    op.create_index("uq_gate_records_code_key", "gate_records", ["code_key"], unique=True,
                    sqlite_where=sa.text("duplicate_of IS NULL"))
