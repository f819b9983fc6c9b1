"""The family helpers' table (亲友代办): who may act for whom, until when, and when it was ended."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


class FamilyHelper(Base):
    """*helper* (a resident) may show *resident*'s code and answer their requests until *until*, unless ended."""

    __tablename__ = "family_helpers"

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    resident: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    helper: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    until: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
