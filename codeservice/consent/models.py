"""The consented pull's tables: offices, consent requests and queue tickets."""

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
)
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


class Office(Base):
    """A place that asks for residents' data: a service-hall window, a hospital desk."""

    __tablename__ = "offices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    #: The purposes its clerks may state, and the certificate types they may request.
    purposes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    cert_types: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    #: What each purpose may ask for, {purpose: [{"type": code, "fields": [names]}]}: only what it needs.
    purpose_asks: Mapped[dict[str, list[dict[str, Any]]]] = mapped_column(JSON, nullable=False, default=dict)
    #: Queue services its kiosks hand out tickets for (取号), e.g. ["business", "social-security"].
    services: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)


class ConsentRequest(Base):
    """A clerk's request for named certificates and fields, and the resident's answer."""

    __tablename__ = "consent_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    resident: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    clerk_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), nullable=False)
    office_id: Mapped[str] = mapped_column(ForeignKey("offices.id"), nullable=False)
    purpose: Mapped[str] = mapped_column(String(300), nullable=False)
    #: [{"type": code, "fields": [names]}] as asked.
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    #: pending | approved | refused | expired | fetched
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    answer_by: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    keep_minutes: Mapped[int] = mapped_column(Integer, nullable=False)
    #: [{"cert_id", "type", "fields": [names]}] as approved.
    approved: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    fetch_by: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    fetched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: The resident the request benefits when it is not the resident asked (a family helper may never approve a
    #: request that benefits the helper); null: the resident asked.
    beneficiary: Mapped[str | None] = mapped_column(String(32))


class QueueTicket(Base):
    """A queue number (取号) for a service at an office, one sequence per office, service and day."""

    __tablename__ = "queue_tickets"
    __table_args__ = (UniqueConstraint("office_id", "service", "day", "number", name="uq_queue_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    office_id: Mapped[str] = mapped_column(ForeignKey("offices.id"), nullable=False)
    service: Mapped[str] = mapped_column(String(64), nullable=False)
    day: Mapped[dt.date] = mapped_column(Date, nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    resident: Mapped[str] = mapped_column(String(32), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)  # waiting | called
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    called_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    called_by: Mapped[int | None] = mapped_column(ForeignKey("api_clients.id"))

