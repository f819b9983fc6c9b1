"""family helpers (亲友代办): who may act for whom and until when; who a consent request benefits

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

``consent_requests.beneficiary``: the resident a request benefits, when the clerk names one other than the
resident asked (null: the resident asked). A family helper may never approve a request that benefits the helper.
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "family_helpers",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("resident", sa.String(32), nullable=False),
        sa.Column("helper", sa.String(32), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_family_helpers_resident", "family_helpers", ["resident"])
    op.create_index("ix_family_helpers_helper", "family_helpers", ["helper"])
    with op.batch_alter_table("consent_requests") as batch:
        batch.add_column(sa.Column("beneficiary", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("consent_requests") as batch:
        batch.drop_column("beneficiary")
    op.drop_index("ix_family_helpers_helper", table_name="family_helpers")
    op.drop_index("ix_family_helpers_resident", table_name="family_helpers")
    op.drop_table("family_helpers")
