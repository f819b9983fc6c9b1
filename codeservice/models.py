"""SQLAlchemy models. Schema changes go through Alembic (codeservice/migrations)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Resident(Base):
    """A real-name-verified resident. Codes name them only by ``pid``, the pseudonymous id."""

    __tablename__ = "residents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pid: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    display_name: Mapped[str | None] = mapped_column(String(200))
    birth_date: Mapped[dt.date | None] = mapped_column(Date)
    #: Subject at the city's identity platform (OpenID Connect ``iss`` + ``sub``), for sign-in.
    external_subject: Mapped[str | None] = mapped_column(String(512), unique=True)
    frozen: Mapped[bool] = mapped_column(default=False, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


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


class Office(Base):
    """A place that asks for residents' data: a service-hall window, a hospital desk."""

    __tablename__ = "offices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    #: The purposes its clerks may state, and the certificate types they may request.
    purposes: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    cert_types: Mapped[list[str]] = mapped_column(JSON, nullable=False)
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


class CheckRecord(Base):
    """One yes/no check (核验): who asked, about whom, what, when, and the answer."""

    __tablename__ = "check_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), nullable=False)
    subject: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    cert_type: Mapped[str] = mapped_column(String(32), nullable=False)
    predicate: Mapped[str | None] = mapped_column(String(64))
    answer: Mapped[bool] = mapped_column(nullable=False)
    receipt_id: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AccessLogEntry(Base):
    """One access to a resident's (or company's) data, in a hash chain: altering, deleting or
    reordering an entry breaks the chain (``citycode audit verify``)."""

    __tablename__ = "access_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: ISO 8601 UTC text, hashed exactly as stored.
    at: Mapped[str] = mapped_column(String(32), nullable=False)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)
    actor_label: Mapped[str] = mapped_column(String(300), nullable=False)
    office: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(32), index=True)
    action: Mapped[str] = mapped_column(String(32), nullable=False)
    what: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    purpose: Mapped[str | None] = mapped_column(String(300))
    outcome: Mapped[str] = mapped_column(String(64), nullable=False)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)


class AuditCheckpoint(Base):
    """A signed statement of the chain's hash at an entry: deletions at the end, and a rewritten
    chain, are caught against it."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False)
    token: Mapped[str] = mapped_column(String(1000), nullable=False)


class Operator(Base):
    """A transport or scenic-site operator: metro, bus company, scenic site. Its fare rules and card-type
    discounts decide what each trip costs (codeservice/fares.py)."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # metro | bus | scenic
    fares: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    #: Percent of the fare each card type pays, e.g. {"adult": 100, "student": 50, "elderly": 0}.
    discounts: Mapped[dict[str, int]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class TransitAccount(Base):
    """A resident's transit account. Gates and operators know it only by ``account``, a pseudonym of its
    own (not the resident's pid), with its card type and per-ride fare limit."""

    __tablename__ = "transit_accounts"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    resident: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    card_type: Mapped[str] = mapped_column(String(16), nullable=False)
    fare_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class RideDevice(Base):
    """A phone's device key, certified by ride credentials; its status-list entry freezes it."""

    __tablename__ = "ride_devices"

    #: The credential id every credential of this device carries (16 hex characters).
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(ForeignKey("transit_accounts.account"), nullable=False, index=True)
    #: Compressed P-256 point, base64url.
    public_key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    status_index: Mapped[int] = mapped_column(Integer, unique=True, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="valid")  # valid | revoked
    label: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    registered_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    authorised_until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class GateRecord(Base):
    """One scan at a gate, as the gate recorded it; stored once whatever the number of deliveries."""

    __tablename__ = "gate_records"
    __table_args__ = (Index("ix_gate_records_operator_day", "operator_id", "service_day"),)

    record_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("api_clients.id"), nullable=False)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), nullable=False)
    gate_id: Mapped[str] = mapped_column(String(64), nullable=False)
    scene: Mapped[str] = mapped_column(String(64), nullable=False)
    station: Mapped[str | None] = mapped_column(String(64))
    line: Mapped[str | None] = mapped_column(String(64))
    direction: Mapped[str | None] = mapped_column(String(8))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    service_day: Mapped[dt.date] = mapped_column(Date, nullable=False)
    accepted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    reason: Mapped[str] = mapped_column(String(32), nullable=False)
    kind: Mapped[str | None] = mapped_column(String(16))
    #: The transit account (for an identity code: the account of its resident, when there is one).
    account: Mapped[str | None] = mapped_column(String(32))
    card_type: Mapped[str | None] = mapped_column(String(16))
    fare_limit: Mapped[int | None] = mapped_column(Integer)
    credential_id: Mapped[str | None] = mapped_column(String(32))
    code_id: Mapped[str | None] = mapped_column(String(64))
    entitlement: Mapped[str | None] = mapped_column(String(64))
    online: Mapped[bool] = mapped_column(Boolean, nullable=False)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: The code an accepted ride or identity scan showed, as the gate read it: signed by the resident's phone
    #: (or the identity office), it proves the scan; checked when the record is stored.
    evidence: Mapped[str | None] = mapped_column(Text)


class Trip(Base):
    """A charged journey or entry, made by clearing from the day's records (replaced when re-run)."""

    __tablename__ = "trips"
    __table_args__ = (Index("ix_trips_operator_day", "operator_id", "service_day"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), nullable=False)
    service_day: Mapped[dt.date] = mapped_column(Date, nullable=False)
    account: Mapped[str | None] = mapped_column(String(32), index=True)
    card_type: Mapped[str | None] = mapped_column(String(16))
    #: paired | unpaired_entry | unpaired_exit | ride | entry | entitlement | unbillable
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    entry_record: Mapped[str | None] = mapped_column(String(32))
    exit_record: Mapped[str | None] = mapped_column(String(32))
    origin: Mapped[str | None] = mapped_column(String(64))
    destination: Mapped[str | None] = mapped_column(String(64))
    line: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Integer cents: the list fare, the card type's discount, what the fare limit cut off, what is charged.
    fare: Mapped[int] = mapped_column(Integer, nullable=False)
    discount: Mapped[int] = mapped_column(Integer, nullable=False)
    capped: Mapped[int] = mapped_column(Integer, nullable=False)
    charged: Mapped[int] = mapped_column(Integer, nullable=False)


class ClearingStatement(Base):
    """An operator's day (清分): its trips and the amount the account platform owes the operator."""

    __tablename__ = "clearing_statements"

    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), primary_key=True)
    service_day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    records: Mapped[int] = mapped_column(Integer, nullable=False)
    trips: Mapped[int] = mapped_column(Integer, nullable=False)
    fare_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    discount_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    capped_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    charged_total: Mapped[int] = mapped_column(BigInteger, nullable=False)
    #: {status: count}, {card_type: {"trips": n, "charged": cents}}
    by_status: Mapped[dict[str, int]] = mapped_column(JSON, nullable=False)
    by_card_type: Mapped[dict[str, dict[str, int]]] = mapped_column(JSON, nullable=False)
    #: SHA-256 of the trips CSV, so that an exported statement can be matched to what was computed.
    digest: Mapped[str] = mapped_column(String(64), nullable=False)
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
