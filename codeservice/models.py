"""SQLAlchemy models. Schema changes go through Alembic (codeservice/migrations)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
