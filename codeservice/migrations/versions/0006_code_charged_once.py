"""one code, one charge: gate records keyed by the code they carry; copies kept as duplicates

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

``gate_records.code_key`` is what makes the code an accepted ride or identity scan carries one code: SHA-256 of
its kind and its code id (a ride code's credential id and nonce, an identity code's cti; both under the
signatures the service checked when it stored the record). A unique index over it, for the records that are
not copies, lets one record a code be charged; a record whose code another record carried first names that
record in ``duplicate_of`` and is never charged.

Existing rows are filled in from what they hold: every row with a code (``evidence``) has the code id that was
checked against that code when the row was stored. Of the rows that share a key, the first received (then the
smallest record id) stays the charged one; the others become its duplicates, so that clearing a day again
charges the code once. ``clearing_statements.duplicates`` counts a day's copies; 0 for statements made before.
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CHUNK = 5000


def _code_key(kind: str, code_id: str) -> str:
    """As ``codeservice.transit.service.code_key`` (copied: a migration does not follow the code that changes)."""
    return hashlib.sha256(f"citycode-code:{kind}:{code_id}".encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("gate_records") as batch:
        batch.add_column(sa.Column("code_key", sa.String(64)))
        batch.add_column(sa.Column("duplicate_of", sa.String(32)))
        batch.create_foreign_key("fk_gate_records_duplicate_of", "gate_records", ["duplicate_of"], ["record_id"])
    _backfill()
    op.create_index("uq_gate_records_code_key", "gate_records", ["code_key"], unique=True,
                    sqlite_where=sa.text("duplicate_of IS NULL"), postgresql_where=sa.text("duplicate_of IS NULL"))
    with op.batch_alter_table("clearing_statements") as batch:
        batch.add_column(sa.Column("duplicates", sa.Integer(), nullable=False, server_default="0"))


def _backfill() -> None:
    bind = op.get_bind()
    records = sa.table("gate_records", sa.column("record_id", sa.String), sa.column("kind", sa.String),
                       sa.column("code_id", sa.String), sa.column("evidence", sa.Text),
                       sa.column("received_at", sa.DateTime), sa.column("code_key", sa.String),
                       sa.column("duplicate_of", sa.String))
    rows = bind.execute(
        sa.select(records.c.record_id, records.c.kind, records.c.code_id)
        .where(records.c.evidence.is_not(None), records.c.code_id.is_not(None), records.c.kind.in_(("ride", "id")))
        .order_by(records.c.received_at, records.c.record_id)
    ).all()
    first: dict[str, str] = {}
    updates = []
    for record_id, kind, code_id in rows:
        key = _code_key(kind, code_id)
        original = first.setdefault(key, record_id)
        updates.append({"id": record_id, "key": key, "of": None if original == record_id else original})
    statement = (sa.update(records).where(records.c.record_id == sa.bindparam("id"))
                 .values(code_key=sa.bindparam("key"), duplicate_of=sa.bindparam("of")))
    for start in range(0, len(updates), _CHUNK):
        bind.execute(statement, updates[start:start + _CHUNK])


def downgrade() -> None:
    with op.batch_alter_table("clearing_statements") as batch:
        batch.drop_column("duplicates")
    op.drop_index("uq_gate_records_code_key", table_name="gate_records")
    with op.batch_alter_table("gate_records") as batch:
        batch.drop_constraint("fk_gate_records_duplicate_of", type_="foreignkey")
        batch.drop_column("duplicate_of")
        batch.drop_column("code_key")
