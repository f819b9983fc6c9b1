"""offices: what each purpose may ask for; yes/no checks: their purpose

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07

``offices.purpose_asks`` maps each of an office's purposes to the certificate types and fields it may ask for,
``{purpose: [{type, fields: [names]}]}`` (data minimisation, as Singpass Myinfo does). An office that existed
before keeps what it could ask: each of its purposes may ask every field of every type the office may request,
until ``citycode office purpose`` narrows it. ``check_records.purpose`` is the purpose a yes/no check stated.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def _disclosable(fields: list[dict], predicates: list[dict]) -> list[str]:
    """What a holder may show of a type, as ``codeservice.certificates.service.disclosable`` names it."""
    return [f["name"] for f in fields if f.get("disclosable")] + [p["name"] for p in predicates]


def upgrade() -> None:
    with op.batch_alter_table("offices") as batch:
        batch.add_column(sa.Column("purpose_asks", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    with op.batch_alter_table("check_records") as batch:
        batch.add_column(sa.Column("purpose", sa.String(300)))
    bind = op.get_bind()
    offices = sa.table("offices", sa.column("id", sa.String), sa.column("purposes", sa.JSON),
                       sa.column("cert_types", sa.JSON), sa.column("purpose_asks", sa.JSON))
    types = sa.table("cert_types", sa.column("code", sa.String), sa.column("fields", sa.JSON),
                     sa.column("predicates", sa.JSON))
    names = {row.code: _disclosable(row.fields or [], row.predicates or [])
             for row in bind.execute(sa.select(types.c.code, types.c.fields, types.c.predicates))}
    for row in bind.execute(sa.select(offices.c.id, offices.c.purposes, offices.c.cert_types)).all():
        asks = [{"type": code, "fields": names[code]} for code in row.cert_types or [] if names.get(code)]
        bind.execute(offices.update().where(offices.c.id == row.id)
                     .values(purpose_asks={purpose: asks for purpose in row.purposes or []}))


def downgrade() -> None:
    with op.batch_alter_table("check_records") as batch:
        batch.drop_column("purpose")
    with op.batch_alter_table("offices") as batch:
        batch.drop_column("purpose_asks")
