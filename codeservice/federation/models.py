"""Federation's table: one row a city this city trusts (or knows and has stopped trusting)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Date, DateTime, Integer, String, func
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


class IntercityTrip(Base):
    """A trip a resident of one city made on an operator of another, as both cities settle it: the host city
    (whose operator carried the visitor) computes it from its cleared trips, the home city imports it from the
    host's signed visits file after checking each of its ride codes (codeservice/federation/settlement.py)."""

    __tablename__ = "intercity_trips"

    host_city: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: The host's record id of the trip's first tap (the entry, or the exit of an unpaired exit).
    trip_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    home_city: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    service_day: Mapped[dt.date] = mapped_column(Date, nullable=False, index=True)
    operator_id: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    account: Mapped[str] = mapped_column(String(32), nullable=False)
    card_type: Mapped[str | None] = mapped_column(String(16))
    origin: Mapped[str | None] = mapped_column(String(64))
    destination: Mapped[str | None] = mapped_column(String(64))
    line: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[int] = mapped_column(BIG, nullable=False)
    ended_at: Mapped[int | None] = mapped_column(BIG)
    fare_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    charged_cents: Mapped[int] = mapped_column(Integer, nullable=False)
    #: The ride codes the host's gates recorded for this trip (entry, then exit): the home city's proof.
    evidence: Mapped[list[str]] = mapped_column(JSON, nullable=False)
