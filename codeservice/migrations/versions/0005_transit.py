"""transit: operators, accounts, ride devices, gate records, trips, clearing statements

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("fares", sa.JSON(), nullable=False),
        sa.Column("discounts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(
            sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id", name="fk_api_clients_operator"))
        )
    op.create_table(
        "transit_accounts",
        sa.Column("account", sa.String(32), primary_key=True),
        sa.Column("resident", sa.String(32), nullable=False, unique=True),
        sa.Column("card_type", sa.String(16), nullable=False),
        sa.Column("fare_limit", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "ride_devices",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(32), sa.ForeignKey("transit_accounts.account"), nullable=False),
        sa.Column("public_key", sa.String(64), nullable=False, unique=True),
        sa.Column("status_index", sa.Integer(), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("authorised_until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ride_devices_account", "ride_devices", ["account"])
    op.create_table(
        "gate_records",
        sa.Column("record_id", sa.String(32), primary_key=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("api_clients.id"), nullable=False),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("gate_id", sa.String(64), nullable=False),
        sa.Column("scene", sa.String(64), nullable=False),
        sa.Column("station", sa.String(64)),
        sa.Column("line", sa.String(64)),
        sa.Column("direction", sa.String(8)),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service_day", sa.Date(), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16)),
        sa.Column("account", sa.String(32)),
        sa.Column("card_type", sa.String(16)),
        sa.Column("fare_limit", sa.Integer()),
        sa.Column("credential_id", sa.String(32)),
        sa.Column("code_id", sa.String(64)),
        sa.Column("entitlement", sa.String(64)),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("evidence", sa.Text()),
    )
    op.create_index("ix_gate_records_operator_day", "gate_records", ["operator_id", "service_day"])
    op.create_table(
        "trips",
        sa.Column("id", BIG, primary_key=True, autoincrement=True),
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("service_day", sa.Date(), nullable=False),
        sa.Column("account", sa.String(32)),
        sa.Column("card_type", sa.String(16)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("entry_record", sa.String(32)),
        sa.Column("exit_record", sa.String(32)),
        sa.Column("origin", sa.String(64)),
        sa.Column("destination", sa.String(64)),
        sa.Column("line", sa.String(64)),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("fare", sa.Integer(), nullable=False),
        sa.Column("discount", sa.Integer(), nullable=False),
        sa.Column("capped", sa.Integer(), nullable=False),
        sa.Column("charged", sa.Integer(), nullable=False),
    )
    op.create_index("ix_trips_operator_day", "trips", ["operator_id", "service_day"])
    op.create_index("ix_trips_account", "trips", ["account"])
    op.create_table(
        "clearing_statements",
        sa.Column("operator_id", sa.String(64), sa.ForeignKey("operators.id"), primary_key=True),
        sa.Column("service_day", sa.Date(), primary_key=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("trips", sa.Integer(), nullable=False),
        sa.Column("fare_total", sa.BigInteger(), nullable=False),
        sa.Column("discount_total", sa.BigInteger(), nullable=False),
        sa.Column("capped_total", sa.BigInteger(), nullable=False),
        sa.Column("charged_total", sa.BigInteger(), nullable=False),
        sa.Column("by_status", sa.JSON(), nullable=False),
        sa.Column("by_card_type", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("clearing_statements", "trips", "gate_records", "ride_devices", "transit_accounts"):
        op.drop_table(table)
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_constraint("fk_api_clients_operator", type_="foreignkey")
        batch.drop_column("operator_id")
    op.drop_table("operators")
