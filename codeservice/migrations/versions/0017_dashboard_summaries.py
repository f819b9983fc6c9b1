"""the dashboards' summaries kept by clearing: taps per (operator, day, city hour, place, card type, outcome),
each gate's day, trips per hour, the days summarised; and the index of a day's records by when they were received
(codeservice/dashboard/models.py, codeservice/dashboard/summaries.py)

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-07

Self-contained: it creates its own tables and one index on ``gate_records`` (on a partitioned ``gate_records``
the index is created on the parent and so on every partition). Days cleared before this migration have no
summary: the dashboards read them from their records (as before) until they are cleared again.
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

RECEIVED = ("ix_gate_records_operator_day_received", "gate_records", ["operator_id", "service_day", "received_at"])


def _day_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column("operator_id", sa.String(64), primary_key=True),
            sa.Column("service_day", sa.Date(), primary_key=True)]


def upgrade() -> None:
    op.create_table(
        "dashboard_tap_hours", *_day_columns(),
        sa.Column("hour", sa.Integer(), primary_key=True),
        sa.Column("place", sa.String(64), primary_key=True),
        sa.Column("card_type", sa.String(16), primary_key=True),
        sa.Column("accepted", sa.Boolean(), primary_key=True),
        sa.Column("reason", sa.String(32), primary_key=True),
        sa.Column("taps", sa.Integer(), nullable=False),
    )
    op.create_table(
        "dashboard_gate_days", *_day_columns(),
        sa.Column("gate_id", sa.String(64), primary_key=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("late_records", sa.Integer(), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dashboard_trip_hours", *_day_columns(),
        sa.Column("hour", sa.Integer(), primary_key=True),
        sa.Column("trips", sa.Integer(), nullable=False),
    )
    op.create_table(
        "dashboard_days", *_day_columns(),
        sa.Column("through", sa.DateTime(timezone=True), nullable=False),
    )
    name, table, columns = RECEIVED
    op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    name, table, _columns = RECEIVED
    op.drop_index(name, table_name=table, if_exists=True)
    for table in ("dashboard_days", "dashboard_trip_hours", "dashboard_gate_days", "dashboard_tap_hours"):
        op.drop_table(table)
