"""Every domain's tables on the one ``Base.metadata``: what Alembic compares, and what lets one domain's
foreign keys name another's tables (``"offices.id"``) without importing it."""

from __future__ import annotations

from codeservice.accesslog.models import AccessLogEntry, AuditCheckpoint
from codeservice.certificates.models import Certificate, CertType, CheckRecord, Department
from codeservice.clients.models import ApiClient
from codeservice.consent.models import ConsentRequest, Office, QueueTicket
from codeservice.dashboard import models as dashboard_indexes  # noqa: F401  (indexes on the tables above)
from codeservice.identity.models import Resident
from codeservice.models import Base
from codeservice.transit.models import ClearingStatement, GateRecord, Operator, RideDevice, TransitAccount, Trip

metadata = Base.metadata

__all__ = [
    "AccessLogEntry", "ApiClient", "AuditCheckpoint", "Base", "CertType", "Certificate", "CheckRecord",
    "ClearingStatement", "ConsentRequest", "Department", "GateRecord", "Office", "Operator", "QueueTicket",
    "Resident", "RideDevice", "TransitAccount", "Trip", "metadata",
]
