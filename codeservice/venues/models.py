"""The tables of venues and service points: venues, check-ins, services, their points and the points' records."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


class Venue(Base):
    """A place that posts a venue code (a library, a hall, a hospital). Its code names it and its entry in the
    venue issuer's status list, which revokes every code the venue was given."""

    __tablename__ = "venues"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    status_index: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="valid")  # valid | revoked
    #: SHA-256 of the venue's own key, with which its staff read the counts (the key is printed once).
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class CheckIn(Base):
    """One resident's check-in at a venue; deleted once ``purge_after`` has passed (the city's retention)."""

    __tablename__ = "venue_checkins"
    __table_args__ = (Index("ix_venue_checkins_venue_day", "venue_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    venue_id: Mapped[str] = mapped_column(ForeignKey("venues.id"), nullable=False)
    resident: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: The city date and hour of ``at``: what the venue's counts group by.
    day: Mapped[dt.date] = mapped_column(Date, nullable=False)
    hour: Mapped[int] = mapped_column(Integer, nullable=False)
    purge_after: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class Service(Base):
    """A service handed out at points (oxygen, drinking water, a free bicycle hour), at most ``daily_quota``
    times a resident a city day across all its points."""

    __tablename__ = "services"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    daily_quota: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class ServicePoint(Base):
    """One point of a service (an oxygen station). It authenticates its uploads with a key of its own (only its
    SHA-256 is kept)."""

    __tablename__ = "service_points"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class PointRecord(Base):
    """One use at a point, stored once whatever the number of deliveries (keyed by the point's record id)."""

    __tablename__ = "point_records"
    __table_args__ = (Index("ix_point_records_service_day_resident", "service_id", "day", "resident"),)

    record_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    point_id: Mapped[str] = mapped_column(ForeignKey("service_points.id"), nullable=False)
    service_id: Mapped[str] = mapped_column(ForeignKey("services.id"), nullable=False)
    resident: Mapped[str] = mapped_column(String(32), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    day: Mapped[dt.date] = mapped_column(Date, nullable=False)
    hour: Mapped[int] = mapped_column(Integer, nullable=False)
    #: Whether the point handed the service out (a refusal is kept too: the use counts only when granted).
    accepted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    #: Decided with the shared quota (online) or by the point alone (offline).
    online: Mapped[bool] = mapped_column(Boolean, nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                     nullable=False)
    note: Mapped[str | None] = mapped_column(Text)
