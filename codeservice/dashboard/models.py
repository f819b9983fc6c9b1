"""The indexes the dashboards' aggregates read through (migration 0014) and the summaries clearing keeps for
them (migration 0017). The indexes sit on the tables of transit, certificates, consent and the access log,
declared here so that those domains' models stay as they are and the dashboards' cost is in one place.

The summaries (codeservice/dashboard/summaries.py) hold an operator's cleared day in grouped rows: taps per
(city hour, station or line, card type, outcome), each gate's records, late records and newest upload, trips per
city hour. They cover the records received up to the statement's ``computed_at``; the dashboards add the
records received after it (``ix_gate_records_operator_day_received``) and read a day not cleared raw.

The two small tables the dashboards keep themselves, certificate use counts and audit runs, are in ``counts.py``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.accesslog.models import AccessLogEntry
from codeservice.certificates.models import CheckRecord
from codeservice.consent.models import ConsentRequest
from codeservice.models import Base
from codeservice.transit.models import GateRecord, Trip

_gates = GateRecord.__table__.c
_trips = Trip.__table__.c

#: Taps per hour of an operator's day: read from the index alone on PostgreSQL (an index-only scan).
TAPS_BY_HOUR = Index("ix_gate_records_operator_day_at", _gates.operator_id, _gates.service_day, _gates.at)
#: Gates by last upload: each gate's records of a day and of the days after.
GATES = Index("ix_gate_records_operator_gate_day", _gates.operator_id, _gates.gate_id, _gates.service_day,
              _gates.received_at)
#: Trips per hour of an operator's day.
TRIPS_BY_HOUR = Index("ix_trips_operator_day_started", _trips.operator_id, _trips.service_day, _trips.started_at)
#: Yes/no checks, consent requests and access-log entries of a range of city days.
CHECKS_BY_TIME = Index("ix_check_records_at", CheckRecord.__table__.c.at)
CONSENT_BY_TIME = Index("ix_consent_requests_created_at", ConsentRequest.__table__.c.created_at)
LOG_BY_TIME = Index("ix_access_log_at", AccessLogEntry.__table__.c.at)

#: The records of a day received after its clearing (added to the summaries; the records waiting).
RECEIVED = Index("ix_gate_records_operator_day_received", _gates.operator_id, _gates.service_day, _gates.received_at)

INDEXES = (TAPS_BY_HOUR, GATES, TRIPS_BY_HOUR, CHECKS_BY_TIME, CONSENT_BY_TIME, LOG_BY_TIME, RECEIVED)


class TapHour(Base):
    """An operator's cleared day: the taps of one city hour at one place with one card type and outcome."""

    __tablename__ = "dashboard_tap_hours"

    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    #: The hour of day in city time, 0 to 23.
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The station (metro, scenic site) or line (bus); '' for a record with neither.
    place: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: 'unknown' for a record without a card type (as the dashboards show it).
    card_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    accepted: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32), primary_key=True)
    taps: Mapped[int] = mapped_column(Integer, nullable=False)


class GateDay(Base):
    """An operator's cleared day at one gate: its records, its late records and its newest upload."""

    __tablename__ = "dashboard_gate_days"

    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    gate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    records: Mapped[int] = mapped_column(Integer, nullable=False)
    late_records: Mapped[int] = mapped_column(Integer, nullable=False)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class TripHour(Base):
    """An operator's cleared day: the trips that started in one city hour."""

    __tablename__ = "dashboard_trip_hours"

    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True)
    trips: Mapped[int] = mapped_column(Integer, nullable=False)


class SummarisedDay(Base):
    """An operator's day whose summaries clearing made: they hold the records received up to ``through``."""

    __tablename__ = "dashboard_days"

    operator_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    through: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
