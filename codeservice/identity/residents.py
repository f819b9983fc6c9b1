"""Residents: creation with a random pseudonymous id, look-up, demo data."""

from __future__ import annotations

import datetime as dt
import os

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeservice.identity.models import Resident
from sdk.claims import SUBJECT_LENGTH, subject_from_text, subject_to_text

DEMO_RESIDENTS = [
    ("Li Wei", dt.date(1952, 3, 14)),
    ("Wang Fang", dt.date(1988, 11, 2)),
    ("Zhang Min", dt.date(2007, 6, 30)),
]


class ResidentError(ValueError):
    pass


def new_pid() -> str:
    return subject_to_text(os.urandom(SUBJECT_LENGTH))


def add_resident(
    session: Session, name: str | None = None, birth_date: dt.date | None = None, external_subject: str | None = None
) -> Resident:
    if name is not None and not (0 < len(name.strip()) <= 200):
        raise ResidentError("name must be 1 to 200 characters")
    resident = Resident(
        pid=new_pid(),
        display_name=name.strip() if name else None,
        birth_date=birth_date,
        external_subject=external_subject,
    )
    session.add(resident)
    session.flush()
    return resident


def get_resident(session: Session, pid: str) -> Resident | None:
    try:
        subject_from_text(pid)
    except ValueError:
        return None
    return session.scalars(select(Resident).where(Resident.pid == pid)).one_or_none()


def frozen_or_none(session: Session, pid: str) -> bool | None:
    """Whether the resident *pid* is frozen; None when there is no such resident. One column, no ORM object:
    what every signed-in request and every code a clerk scans asks of the residents' table."""
    try:
        subject_from_text(pid)
    except ValueError:
        return None
    return session.execute(select(Resident.frozen).where(Resident.pid == pid)).scalar_one_or_none()


def by_external_subject(session: Session, subject: str) -> Resident | None:
    return session.scalars(select(Resident).where(Resident.external_subject == subject)).one_or_none()


def list_residents(session: Session, limit: int = 50) -> list[Resident]:
    return list(session.scalars(select(Resident).order_by(Resident.id).limit(limit)))


def ensure_demo_residents(session: Session) -> list[Resident]:
    existing = {r.display_name: r for r in session.scalars(select(Resident).where(
        Resident.display_name.in_([n for n, _ in DEMO_RESIDENTS]))) if r.display_name}
    out = []
    for name, birth in DEMO_RESIDENTS:
        out.append(existing.get(name) or add_resident(session, name, birth))
    return out


def to_json(resident: Resident) -> dict[str, object]:
    return {
        "id": resident.pid,
        "name": resident.display_name,
        "birth_date": resident.birth_date.isoformat() if resident.birth_date else None,
        "frozen": resident.frozen,
    }
