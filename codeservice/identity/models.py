"""The residents' table: a random pseudonymous id, what the identity office knows, and the freeze flag."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Date,
    DateTime,
    Integer,
    String,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column

from codeservice.models import Base


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

