"""Venues (扫码登记): the venue issuer, venue codes and their status list, check-ins, retention, counts, and the data
office's named requests. docs/venues.md.

A venue code is a long-lived ``venue`` code (sdk/claims.py, kind 6) signed by ``city-venues``; it names the venue
and its status-list index, so revoking the venue revokes every code it was given. A resident's check-in keeps the
resident's pid, the venue, the time and the city date and hour; it is deleted after the city's retention period
(``CITYCODE_CHECKIN_RETENTION_DAYS``, 14 days unless set), which no venue can change. A venue sees counts per
hour only; names come out only through the data office's named request, which the access log records.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from codeservice.accesslog.service import append as log_append
from codeservice.certificates.service import covering_size
from codeservice.clients.service import hash_key
from codeservice.errors import NotFound, Refused
from codeservice.venues.models import CheckIn, Venue
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from issuers.trustlist import current_trust_list
from sdk.citytime import CITY_TZ
from sdk.claims import CLAIM_VENUE, VENUE_ID, VENUE_STATUS_INDEX
from sdk.result import Result
from sdk.scene import Scene
from sdk.statuslist import INVALID, StatusCache
from sdk.verifier import Verifier

#: Signs venue codes and the venues' status list; in the trust list like every issuer.
VENUE_ISSUER = IssuerInfo("city-venues", "City Venue Registry", ("venue",))
#: What a resident's phone checks a scanned venue code under: venue codes only, scanned again and again.
CHECKIN_SCENE = Scene("venue-checkin", frozenset({"venue"}), single_use=False, max_status_age=24 * 3600)
VENUE_ID_PATTERN = re.compile(r"[a-z][a-z0-9-]{1,63}")
#: A venue code is posted for a year unless asked otherwise; revocation ends it sooner.
DEFAULT_CODE_DAYS = 365
MAX_CODE_DAYS = 365  # a rotated venue key stays trusted this long (Settings.grace_for)
MIN_REASON = 10


class VenueError(Refused):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class VenueNotFound(VenueError, NotFound):
    pass


@dataclass(frozen=True)
class CodeRefused(Exception):
    """A scanned venue code that is refused: the verifier's stable reason (or ``unknown_venue``)."""

    reason: str
    detail: str


# -- venues -----------------------------------------------------------------------------------------------------
def new_key(prefix: str) -> tuple[str, str]:
    """A fresh secret key (printed once) and the SHA-256 kept of it."""
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, hash_key(key)


def add_venue(session: Session, venue_id: str, name: str) -> tuple[Venue, str]:
    """A new venue and its key (the only time the key is seen)."""
    if not isinstance(venue_id, str) or not VENUE_ID_PATTERN.fullmatch(venue_id):
        raise VenueError("invalid_venue", "venue id: 2 to 64 of a-z, 0-9 and '-', starting with a letter")
    name = (name or "").strip() if isinstance(name, str) else ""
    if not 1 <= len(name) <= 200:
        raise VenueError("invalid_venue", "a venue needs a name of 1 to 200 characters")
    if session.get(Venue, venue_id) is not None:
        raise VenueError("exists", f"venue {venue_id} exists")
    highest = session.scalar(select(func.max(Venue.status_index)))
    key, key_hash = new_key("cc_v")
    venue = Venue(id=venue_id, name=name, status_index=0 if highest is None else highest + 1, status="valid",
                  key_hash=key_hash)
    session.add(venue)
    session.flush()
    return venue, key


def venue_by_key(session: Session, key: str) -> Venue | None:
    return session.scalar(select(Venue).where(Venue.key_hash == hash_key(key)))


def get_venue(session: Session, venue_id: str) -> Venue:
    venue = session.get(Venue, venue_id) if isinstance(venue_id, str) else None
    if venue is None:
        raise VenueNotFound("unknown_venue", f"no venue {venue_id!r}")
    return venue


def revoke_venue(session: Session, venue_id: str) -> Venue:
    """Revoke the venue: every code it was given is refused once the status list is refreshed (at once here)."""
    venue = get_venue(session, venue_id)
    venue.status = "revoked"
    session.flush()
    return venue


def list_venues(session: Session) -> list[Venue]:
    return list(session.scalars(select(Venue).order_by(Venue.id)))


def venue_json(venue: Venue) -> dict[str, Any]:
    return {"id": venue.id, "name": venue.name, "status": venue.status}


def venue_code(keyring: Keyring, venue: Venue, *, days: int = DEFAULT_CODE_DAYS, now: float | None = None) -> str:
    """A fresh code for *venue* to post, valid *days* days."""
    if venue.status != "valid":
        raise VenueError("venue_revoked", f"venue {venue.id} is revoked; it gets no new codes")
    if type(days) is not int or not 1 <= days <= MAX_CODE_DAYS:
        raise VenueError("invalid_days", f"a venue code is valid 1 to {MAX_CODE_DAYS} days")
    return issue_code(keyring.signer(VENUE_ISSUER.id), "venue", subject=None, lifetime=days * 86400, now=now,
                      extra={CLAIM_VENUE: {VENUE_ID: venue.id, VENUE_STATUS_INDEX: venue.status_index}})


def venue_status_list(session: Session, keyring: Keyring, *, size: int, uri: str, ttl: int, validity: int,
                      now: float | None = None) -> str:
    """The venue issuer's status list: a revoked venue's entry is invalid."""
    statuses = {index: INVALID for index in session.scalars(select(Venue.status_index)
                                                            .where(Venue.status != "valid"))}
    size = covering_size(size, session.scalar(select(func.max(Venue.status_index))))
    return sign_status_list(keyring.signer(VENUE_ISSUER.id), statuses, size=size, uri=uri, ttl=ttl,
                            validity=validity, now=now)


# -- a scanned code ---------------------------------------------------------------------------------------------
def check_venue_code(session: Session, keyring: Keyring, text: Any, *, leeway: int, trust_validity: int,
                     now: float | None = None) -> Venue:
    """The venue a scanned venue code names, after its signature, kind, times and status are checked as a phone
    would offline (the current trust list and the venues' status list); :class:`CodeRefused` otherwise."""
    now = time.time() if now is None else now
    trust = current_trust_list(keyring, validity=trust_validity, now=now)
    status = StatusCache()
    status.load(venue_status_list(session, keyring, size=1024, uri="venues", ttl=300, validity=3600, now=now),
                trust, at=now)
    result: Result = Verifier(trust, leeway=leeway, status=status, clock=lambda: now).verify(text, CHECKIN_SCENE)
    if not result.accepted:
        raise CodeRefused(result.reason.value, result.detail)
    venue = session.get(Venue, result.venue_id) if result.venue_id else None
    if venue is None:
        raise CodeRefused("unknown_venue", "the code names no venue of this city")
    if venue.status != "valid":  # the status list says so too; checked again against the table itself
        raise CodeRefused("revoked", "venue revoked")
    return venue


# -- check-ins --------------------------------------------------------------------------------------------------
def _city_moment(at: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, CITY_TZ)


def record_checkin(session: Session, venue: Venue, resident: str, *, retention_days: int,
                   now: float | None = None) -> CheckIn:
    now = time.time() if now is None else now
    local = _city_moment(now)
    checkin = CheckIn(venue_id=venue.id, resident=resident, at=dt.datetime.fromtimestamp(now, dt.UTC),
                      day=local.date(), hour=local.hour,
                      purge_after=dt.datetime.fromtimestamp(now + retention_days * 86400, dt.UTC))
    session.add(checkin)
    session.flush()
    return checkin


def checkins_of(session: Session, resident: str, limit: int = 100) -> list[tuple[CheckIn, str]]:
    rows = session.execute(select(CheckIn, Venue.name).join(Venue, Venue.id == CheckIn.venue_id)
                           .where(CheckIn.resident == resident).order_by(CheckIn.at.desc(), CheckIn.id.desc())
                           .limit(limit))
    return [(row[0], row[1]) for row in rows]


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)  # SQLite gives naive UTC back


def checkin_json(checkin: CheckIn, venue_name: str) -> dict[str, Any]:
    return {"venue": checkin.venue_id, "venue_name": venue_name,
            "at": _aware(checkin.at).astimezone(CITY_TZ).isoformat(timespec="seconds"),
            "deleted_after": _aware(checkin.purge_after).astimezone(CITY_TZ).isoformat(timespec="seconds")}


def purge_checkins(session: Session, now: float | None = None) -> int:
    """Delete every check-in whose retention has passed; the number deleted."""
    now = time.time() if now is None else now
    result = session.execute(delete(CheckIn).where(CheckIn.purge_after <= dt.datetime.fromtimestamp(now, dt.UTC)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def counts_per_hour(session: Session, venue_id: str, day: dt.date) -> list[dict[str, int]]:
    """What a venue sees: check-ins per city hour of *day* (every hour 0 to 23), never who."""
    get_venue(session, venue_id)
    found = {int(hour): int(count) for hour, count in session.execute(
        select(CheckIn.hour, func.count()).where(CheckIn.venue_id == venue_id, CheckIn.day == day)
        .group_by(CheckIn.hour))}
    return [{"hour": hour, "count": int(found.get(hour, 0))} for hour in range(24)]


def named_request(session: Session, venue_id: str, day: dt.date, reason: Any, *, actor: str,
                  actor_label: str) -> list[dict[str, Any]]:
    """The data office's named request: who checked in at *venue_id* on *day*, for the stated *reason*. The
    request is one access-log entry (action ``venue_request``): who asked, which venue and day, how many residents
    were named, and why."""
    venue = get_venue(session, venue_id)
    reason = reason.strip() if isinstance(reason, str) else ""
    if not MIN_REASON <= len(reason) <= 500:
        raise VenueError("reason_required", f"a named request states its reason ({MIN_REASON} to 500 characters)")
    rows = checkins_of_day(session, venue.id, day)
    named = len({c.resident for c in rows})
    log_append(session, actor=actor, actor_label=actor_label, action="venue_request", outcome="released",
               what=[{"venue": venue.id, "date": day.isoformat(), "residents": named}], purpose=reason)
    return [{"resident": c.resident, "at": _aware(c.at).astimezone(CITY_TZ).isoformat(timespec="seconds")}
            for c in rows]


def checkins_of_day(session: Session, venue_id: str, day: dt.date) -> list[CheckIn]:
    return list(session.scalars(select(CheckIn).where(CheckIn.venue_id == venue_id, CheckIn.day == day)
                                .order_by(CheckIn.at, CheckIn.id)))
