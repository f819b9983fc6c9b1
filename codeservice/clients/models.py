"""The API clients' table: one row a machine client, its role, the hash of its key and what it may ask."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


class ApiClient(Base):
    """A machine client with an API key: an administrator or an authorised verifier (an office, a shop)."""

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)  # admin | verifier | clerk | device | auditor
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    #: For verifiers: certificate types and predicates they may ask about.
    allowed_types: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    allowed_predicates: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    active: Mapped[bool] = mapped_column(default=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    #: Clerks and devices belong to an office (a window, a kiosk's hall).
    office_id: Mapped[str | None] = mapped_column(ForeignKey("offices.id"))
    #: Requests a minute this client may make on rate-limited endpoints.
    rate_per_minute: Mapped[int] = mapped_column(Integer, nullable=False, default=60)
    #: Gates (devices) and operator staff belong to a transport or scenic-site operator.
    operator_id: Mapped[str | None] = mapped_column(ForeignKey("operators.id"))

