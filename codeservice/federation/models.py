"""Federation's table: one row a city this city trusts (or knows and has stopped trusting)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base

BIG = BigInteger().with_variant(Integer(), "sqlite")


class FederatedCity(Base):
    """Another city: its id, service URL and anchor key, the kinds and scenes its residents' codes are accepted
    for, and the federation's dates. Ending a federation keeps the row (its ``valid_until`` becomes the end), so
    that gates still know the city and refuse its codes as ``city_not_accepted``."""

    __tablename__ = "federated_cities"

    city: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    anchor_jwk: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    anchor_kid: Mapped[str] = mapped_column(String(16), nullable=False)
    kinds: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    scenes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    valid_from: Mapped[int] = mapped_column(BIG, nullable=False)
    valid_until: Mapped[int] = mapped_column(BIG, nullable=False)
    ended_at: Mapped[int | None] = mapped_column(BIG, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
