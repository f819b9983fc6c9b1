"""The certificates' tables: issuing departments, certificate types, certificates and yes/no check records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


class Department(Base):
    """An issuing department: an issuer with its own keys in the trust list."""

    __tablename__ = "departments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    #: The department's unified social credit code; it is the issuer code in GB/T 36904 identifiers.
    org_code: Mapped[str] = mapped_column(String(18), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class CertType(Base):
    """A kind of certificate: its fields, derived predicates and default validity."""

    __tablename__ = "cert_types"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), nullable=False)
    holder_kind: Mapped[str] = mapped_column(String(16), nullable=False)  # resident | company
    #: [{"name", "label", "type": text|date|int|bool, "disclosable": bool}]
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    #: [{"name": "age_over_60", "field": "birth_date", "op": "age_over", "value": 60}]
    predicates: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)
    validity_days: Mapped[int] = mapped_column(Integer, nullable=False)


class Certificate(Base):
    """An electronic certificate (GB/T 36903 metadata) and its status."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("department_id", "status_index", name="uq_certificates_status_slot"),)

    id: Mapped[str] = mapped_column(String(160), primary_key=True)  # GB/T 36904 identifier
    type_code: Mapped[str] = mapped_column(ForeignKey("cert_types.code"), nullable=False)
    department_id: Mapped[str] = mapped_column(ForeignKey("departments.id"), nullable=False)
    number: Mapped[str] = mapped_column(String(64), nullable=False)
    holder: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    holder_kind: Mapped[str] = mapped_column(String(16), nullable=False)
    issued_on: Mapped[dt.date] = mapped_column(Date, nullable=False)
    valid_from: Mapped[dt.date] = mapped_column(Date, nullable=False)
    valid_until: Mapped[dt.date] = mapped_column(Date, nullable=False)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="valid")
    status_index: Mapped[int] = mapped_column(Integer, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)


class CheckRecord(Base):
    """One yes/no check (核验): who asked, about whom, what, when, and the answer."""

    __tablename__ = "check_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), nullable=False)
    subject: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    cert_type: Mapped[str] = mapped_column(String(32), nullable=False)
    predicate: Mapped[str | None] = mapped_column(String(64))
    #: The purpose the verifier stated (none for checks made before purposes were asked).
    purpose: Mapped[str | None] = mapped_column(String(300))
    answer: Mapped[bool] = mapped_column(nullable=False)
    receipt_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)

