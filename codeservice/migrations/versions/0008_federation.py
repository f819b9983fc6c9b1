"""federation: the cities this city trusts, and the trips settled between cities

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
    op.create_table(
        "intercity_trips",
        sa.Column("host_city", sa.String(64), primary_key=True),
        sa.Column("trip_key", sa.String(32), primary_key=True),
        sa.Column("home_city", sa.String(64), nullable=False),
        sa.Column("service_day", sa.Date(), nullable=False),
        sa.Column("operator_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("account", sa.String(32), nullable=False),
        sa.Column("card_type", sa.String(16)),
        sa.Column("origin", sa.String(64)),
        sa.Column("destination", sa.String(64)),
        sa.Column("line", sa.String(64)),
        sa.Column("started_at", BIG, nullable=False),
        sa.Column("ended_at", BIG),
        sa.Column("fare_cents", sa.Integer(), nullable=False),
        sa.Column("charged_cents", sa.Integer(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
    )
    op.create_index("ix_intercity_trips_home_city", "intercity_trips", ["home_city"])
    op.create_index("ix_intercity_trips_service_day", "intercity_trips", ["service_day"])


def downgrade() -> None:
    op.drop_table("intercity_trips")
    op.drop_table("federated_cities")
