"""printed cards (实体卡): one row a card, its code, its status-list index, when it was reported lost

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "printed_cards",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("resident", sa.String(32), nullable=False),
        sa.Column("printed_name", sa.String(200), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("lost_at", sa.DateTime(timezone=True)),
        sa.Column("issued_by", sa.String(64), nullable=False),
        sa.Column("code", sa.String(2048), nullable=False),
        sa.UniqueConstraint("status_index", name="uq_printed_cards_status_index"),
    )
    op.create_index("ix_printed_cards_resident", "printed_cards", ["resident"])


def downgrade() -> None:
    op.drop_index("ix_printed_cards_resident", table_name="printed_cards")
    op.drop_table("printed_cards")
