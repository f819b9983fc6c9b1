"""certificate use counts (shows verified online, consented pulls, per city date and department) and audit runs
(codeservice/dashboard/counts.py)

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-07

Self-contained: two new tables, nothing read from or changed in another. Written against 0014; when another
branch's 0015 lands first, this one's ``down_revision`` becomes ``"0015"`` (nothing else changes).
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "certificate_use_counts",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("department_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
    )
    op.create_table(
        "audit_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("entries_checked", sa.Integer(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(300)),
    )
    op.create_index("ix_audit_runs_at", "audit_runs", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_runs_at", table_name="audit_runs")
    op.drop_table("audit_runs")
    op.drop_table("certificate_use_counts")
