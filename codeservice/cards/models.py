"""The printed cards' table: one row a card, the code printed on it, and when it was reported lost."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


class PrintedCard(Base):
    """A printed card (实体卡) a service window made for a resident. Its code names the resident only by their
    pseudonymous id; the printed name is the one the resident chose for the card."""

    __tablename__ = "printed_cards"
    __table_args__ = (UniqueConstraint("status_index", name="uq_printed_cards_status_index"),)

    #: The card's id: its code's cti, 16 hex digits.
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    resident: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    printed_name: Mapped[str] = mapped_column(String(200), nullable=False)
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    #: The card's entry in the card issuer's status list; never reused.
    status_index: Mapped[int] = mapped_column(Integer, nullable=False)
    #: Set once, when the card is reported lost: from then on the status list says revoked.
    lost_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    #: Who issued it (the access log's actor: ``clerk:<id>`` or ``cli``).
    issued_by: Mapped[str] = mapped_column(String(64), nullable=False)
    #: The code printed on the card, to print the same card again.
    code: Mapped[str] = mapped_column(String(2048), nullable=False)
