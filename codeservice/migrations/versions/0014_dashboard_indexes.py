"""the dashboards' indexes: taps and trips per hour of an operator's day, gates by last upload, checks,
consent requests and access-log entries by time (codeservice/dashboard/models.py)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

On PostgreSQL each index is built ``CONCURRENTLY`` would be better on a live city; Alembic runs migrations in a
transaction, so they are built plainly here (a few seconds for a day of a million taps) and a city with large
tables builds them by hand first (``CREATE INDEX CONCURRENTLY`` with the same names; this migration then skips
them: ``if_not_exists``).
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_gate_records_operator_day_at", "gate_records", ["operator_id", "service_day", "at"]),
    ("ix_gate_records_operator_gate_day", "gate_records", ["operator_id", "gate_id", "service_day", "received_at"]),
    ("ix_trips_operator_day_started", "trips", ["operator_id", "service_day", "started_at"]),
    ("ix_check_records_at", "check_records", ["at"]),
    ("ix_consent_requests_created_at", "consent_requests", ["created_at"]),
    ("ix_access_log_at", "access_log", ["at"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, if_not_exists=True)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table, if_exists=True)
