"""The access log's tables: the hash-chained entries and the signed checkpoints of the chain's head."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


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

