"""departments, certificate types, certificates, API clients, yes/no check records

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("org_code", sa.String(18), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "cert_types",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("department_id", sa.String(64), sa.ForeignKey("departments.id"), nullable=False),
        sa.Column("holder_kind", sa.String(16), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("predicates", sa.JSON(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.String(160), primary_key=True),
        sa.Column("type_code", sa.String(32), sa.ForeignKey("cert_types.code"), nullable=False),
        sa.Column("department_id", sa.String(64), sa.ForeignKey("departments.id"), nullable=False),
        sa.Column("number", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(32), nullable=False),
        sa.Column("holder_kind", sa.String(16), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_index", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("department_id", "status_index", name="uq_certificates_status_slot"),
    )
    op.create_index("ix_certificates_holder", "certificates", ["holder"])
    op.create_table(
        "api_clients",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("allowed_types", sa.JSON(), nullable=False),
        sa.Column("allowed_predicates", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "check_records",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("client_id", sa.Integer(), sa.ForeignKey("api_clients.id"), nullable=False),
        sa.Column("subject", sa.String(32), nullable=False),
        sa.Column("cert_type", sa.String(32), nullable=False),
        sa.Column("predicate", sa.String(64)),
        sa.Column("answer", sa.Boolean(), nullable=False),
        sa.Column("receipt_id", sa.String(32), nullable=False, unique=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_check_records_subject", "check_records", ["subject"])


def downgrade() -> None:
    op.drop_table("check_records")
    op.drop_table("api_clients")
    op.drop_table("certificates")
    op.drop_table("cert_types")
    op.drop_table("departments")
