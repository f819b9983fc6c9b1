"""Every domain's tables on the one ``Base.metadata``: what Alembic compares, and what lets one domain's
foreign keys name another's tables (``"offices.id"``) without importing it."""

from __future__ import annotations

from codeservice.accesslog.models import AccessLogEntry, AuditCheckpoint
from codeservice.cards.models import PrintedCard
from codeservice.certificates.models import Certificate, CertType, CheckRecord, Department
from codeservice.clients.models import ApiClient
from codeservice.consent.models import ConsentRequest, Office, QueueTicket
from codeservice.dashboard import models as dashboard_indexes  # noqa: F401  (indexes on the tables above)
from codeservice.dashboard.counts import AuditRun, CertificateUseCount
from codeservice.federation.models import FederatedCity, IntercityTrip
from codeservice.helpers.models import FamilyHelper
from codeservice.identity.models import Resident
from codeservice.models import Base
from codeservice.transit.models import ClearingStatement, GateRecord, Operator, RideDevice, TransitAccount, Trip
from codeservice.venues.models import CheckIn, PointRecord, Service, ServicePoint, Venue

metadata = Base.metadata

__all__ = [
    "AccessLogEntry", "ApiClient", "AuditCheckpoint", "AuditRun", "Base", "CertType", "Certificate",
    "CertificateUseCount", "CheckIn", "CheckRecord",
    "ClearingStatement", "ConsentRequest", "Department", "FamilyHelper", "FederatedCity", "GateRecord",
    "IntercityTrip", "Office", "Operator", "PointRecord", "PrintedCard", "QueueTicket", "Resident", "RideDevice",
    "Service", "ServicePoint", "TransitAccount", "Trip", "Venue", "metadata",
]
