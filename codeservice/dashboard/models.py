"""The indexes the dashboards' aggregates read through (migration 0014). These indexes sit on the tables of
transit, certificates, consent and the access log, declared here so that those domains' models stay as they are
and the dashboards' cost is in one place. (The two small tables the dashboards keep themselves, certificate use
counts and audit runs, are in ``counts.py``.)"""

from __future__ import annotations

from sqlalchemy import Index

from codeservice.accesslog.models import AccessLogEntry
from codeservice.certificates.models import CheckRecord
from codeservice.consent.models import ConsentRequest
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

INDEXES = (TAPS_BY_HOUR, GATES, TRIPS_BY_HOUR, CHECKS_BY_TIME, CONSENT_BY_TIME, LOG_BY_TIME)
