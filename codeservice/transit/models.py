"""Transit's tables: operators with their fares, accounts, ride devices, gate records, trips and statements."""

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
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


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
    """One scan at a gate, as the gate recorded it; stored once whatever the number of deliveries, and its code
    charged once whatever the number of records that carry it."""

    __tablename__ = "gate_records"
    __table_args__ = (
        Index("ix_gate_records_operator_day", "operator_id", "service_day"),
        # one charged record a code, across every operator: the copies name it in duplicate_of. With the day: on
        # PostgreSQL the table is partitioned by service_day (codeservice/transit/partitions.py), whose unique
        # indexes must hold it; the upload path looks a code key up across every day before it inserts.
        Index("uq_gate_records_code_key", "code_key", "service_day", unique=True,
              sqlite_where=text("duplicate_of IS NULL"), postgresql_where=text("duplicate_of IS NULL")),
    )

    #: The gate's record id. On PostgreSQL the table's primary key is (record_id, service_day), its partition key
    #: (migration 0015); a record always has the same service_day, so a retry still conflicts with it.
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
    #: What makes that code one code (``codeservice.transit.service.code_key``): SHA-256 of its kind and its signed
    #: code id, for a ride code the credential id and the nonce. Null for a record that carries no code.
    code_key: Mapped[str | None] = mapped_column(String(64))
    #: For a record whose code another record carried first: that record, the one that is charged. This one is
    #: kept as the gate sent it, shown to the operator, and never charged. No foreign key since migration 0015 (one
    #: to a partitioned table must name the partition key, and a copy may fall on the day after its original): the
    #: upload path sets it only to a stored original's id.
    duplicate_of: Mapped[str | None] = mapped_column(String(32))


class Trip(Base):
    """A charged journey or entry, made by clearing from the day's records (replaced when re-run)."""

    __tablename__ = "trips"
    __table_args__ = (Index("ix_trips_operator_day", "operator_id", "service_day"),)

    #: On PostgreSQL the table's primary key is (id, service_day), its partition key (migration 0015).
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
    #: Accepted records of the day whose code was charged under another record (``GateRecord.duplicate_of``):
    #: not in ``records``, charged nothing.
    duplicates: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
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

