"""offices, clerk and device clients, consent requests, queue tickets

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "offices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("purposes", sa.JSON(), nullable=False),
        sa.Column("cert_types", sa.JSON(), nullable=False),
        sa.Column("services", sa.JSON(), nullable=False),
    )
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(
            sa.Column("office_id", sa.String(64), sa.ForeignKey("offices.id", name="fk_api_clients_office"))
        )
        batch.add_column(sa.Column("rate_per_minute", sa.Integer(), nullable=False, server_default="60"))
    op.create_table(
        "consent_requests",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("resident", sa.String(32), nullable=False),
        sa.Column("clerk_id", sa.Integer(), sa.ForeignKey("api_clients.id"), nullable=False),
        sa.Column("office_id", sa.String(64), sa.ForeignKey("offices.id"), nullable=False),
        sa.Column("purpose", sa.String(300), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answer_by", sa.DateTime(timezone=True), nullable=False),
        sa.Column("keep_minutes", sa.Integer(), nullable=False),
        sa.Column("approved", sa.JSON()),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("fetch_by", sa.DateTime(timezone=True)),
        sa.Column("fetched_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_consent_requests_resident", "consent_requests", ["resident"])
    op.create_table(
        "queue_tickets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("office_id", sa.String(64), sa.ForeignKey("offices.id"), nullable=False),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("resident", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("called_at", sa.DateTime(timezone=True)),
        sa.Column("called_by", sa.Integer(), sa.ForeignKey("api_clients.id")),
        sa.UniqueConstraint("office_id", "service", "day", "number", name="uq_queue_number"),
    )


def downgrade() -> None:
    op.drop_table("queue_tickets")
    op.drop_table("consent_requests")
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_column("rate_per_minute")
        batch.drop_column("office_id")
    op.drop_table("offices")
