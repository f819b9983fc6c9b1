"""federation: the cities this city trusts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "federated_cities",
        sa.Column("city", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("anchor_jwk", sa.JSON(), nullable=False),
        sa.Column("anchor_kid", sa.String(16), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("scenes", sa.JSON(), nullable=False),
        sa.Column("valid_from", BIG, nullable=False),
        sa.Column("valid_until", BIG, nullable=False),
        sa.Column("ended_at", BIG, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("federated_cities")
