"""Printed cards (实体卡/纸质码) for residents without a smartphone: issue at a service window, list, report lost.

A card is a long-lived code of its own kind (``card``) signed by the card issuer's own key (``city-card``), valid
for ``CITYCODE_CARD_MONTHS`` months, revoked in the card issuer's status list the moment it is reported lost.
A resident holds at most one card that is neither lost nor expired. Every issue and every loss report is in the
resident's history (the access log). No Flask here.
"""

from __future__ import annotations

import calendar
import datetime as dt
import secrets
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from codeservice.accesslog import service as accesslog
from codeservice.cards.models import PrintedCard
from codeservice.certificates.service import covering_size
from codeservice.identity.models import Resident
from codeservice.identity.residents import get_resident
from issuers.cards import CardError as RenderError
from issuers.cards import clean_name, issue_card_code, new_card_id
from issuers.keyring import IssuerInfo, Keyring
from issuers.statuslist import sign_status_list
from sdk.citytime import CITY_TZ
from sdk.claims import subject_from_text
from sdk.statuslist import INVALID, SUSPENDED

#: Signs printed cards, and their status list; its public key is in the trust list for kind ``card`` only.
CARD_OFFICE = IssuerInfo("city-card", "City Card Office", ("card",))
CARD_ID = 16  # hex digits


class CardError(Exception):
    """A refused step; ``reason`` is stable, ``status`` the HTTP status."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status


def _utc(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """*moment* plus *months* calendar months in city time (the 31st becomes the month's last day)."""
    local = moment.astimezone(CITY_TZ)
    month0 = local.month - 1 + months
    year, month = local.year + month0 // 12, month0 % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(dt.UTC)


def state_of(card: PrintedCard, now: dt.datetime | None = None) -> str:
    """``lost``, ``expired`` or ``valid``."""
    if card.lost_at is not None:
        return "lost"
    if aware(card.expires_at) <= _utc(now):
        return "expired"
    return "valid"


def plausible_card_id(card_id: str) -> bool:
    return isinstance(card_id, str) and len(card_id) == CARD_ID and all(c in "0123456789abcdef" for c in card_id)


def _allocate_index(session: Session, size: int) -> int:
    used = set(session.scalars(select(PrintedCard.status_index)))
    if len(used) >= size * 0.9:
        raise CardError("status_list_full", "the card status list is full; raise CITYCODE_STATUS_LIST_SIZE", 503)
    while True:
        index = secrets.randbelow(size)
        if index not in used:
            return index


def cards_of(session: Session, resident: str) -> list[PrintedCard]:
    return list(session.scalars(select(PrintedCard).where(PrintedCard.resident == resident)
                                .order_by(PrintedCard.issued_at.desc(), PrintedCard.id)))


def issue_card(
    session: Session, keyring: Keyring, *, resident: str, name: str | None, months: int, status_list_size: int,
    actor: str, actor_label: str, office: str | None = None, now: dt.datetime | None = None,
) -> PrintedCard:
    """A new card for *resident*, printed with *name* (by default the resident's display name)."""
    moment = _utc(now).replace(microsecond=0)
    found = get_resident(session, resident) if isinstance(resident, str) else None
    if found is None:
        raise CardError("not_found", f"no resident {resident!r}", 404)
    if found.frozen:
        raise CardError("identity_frozen", "this identity is frozen; the identity office must unfreeze it first", 403)
    try:
        printed = clean_name(name if name is not None else (found.display_name or ""))
    except RenderError as exc:
        raise CardError("invalid_name", str(exc) if name is not None else
                        "the resident has no display name; give the name to print", 422) from None
    current = [c for c in cards_of(session, found.pid) if state_of(c, moment) == "valid"]
    if current:
        raise CardError("card_exists", "the resident holds a valid card; report it lost before printing another",
                        409)
    if not 1 <= months <= 120:
        raise CardError("invalid_body", "a card lives 1 to 120 months")
    expires = add_months(moment, months)
    for _ in range(10):
        card_id = new_card_id()
        if session.get(PrintedCard, card_id.hex()) is None:
            break
    else:  # pragma: no cover - 64 random bits
        raise CardError("busy", "could not draw a card id; try again", 503)
    index = _allocate_index(session, status_list_size)
    code = issue_card_code(keyring.signer(CARD_OFFICE.id), subject=subject_from_text(found.pid), card_id=card_id,
                           status_index=index, issued_at=int(moment.timestamp()),
                           expires_at=int(expires.timestamp()))
    card = PrintedCard(id=card_id.hex(), resident=found.pid, printed_name=printed, issued_at=moment,
                       expires_at=expires, status_index=index, issued_by=actor[:64], code=code)
    session.add(card)
    session.flush()
    accesslog.append(session, actor=actor, actor_label=actor_label, office=office, subject=found.pid,
                     action="card_issue", what=[{"card": card.id}], purpose="printed card", outcome="issued",
                     now=moment)
    return card


def find_card(session: Session, card_id: str, resident: str | None = None) -> PrintedCard:
    """The card *card_id* (of *resident* when given); ``not_found`` else, whoever holds it."""
    card = session.get(PrintedCard, card_id) if plausible_card_id(card_id) else None
    if card is None or (resident is not None and card.resident != resident):
        raise CardError("not_found", "no such card", 404)
    return card


def report_lost(
    session: Session, card_id: str, *, actor: str, actor_label: str, resident: str | None = None,
    office: str | None = None, now: dt.datetime | None = None,
) -> PrintedCard:
    """Mark the card lost (revoked in the status list from now on). Reporting it again changes nothing."""
    moment = _utc(now)
    card = find_card(session, card_id, resident)
    if card.lost_at is not None:
        return card
    done = session.execute(update(PrintedCard).where(PrintedCard.id == card.id, PrintedCard.lost_at.is_(None))
                           .values(lost_at=moment).execution_options(synchronize_session=False))
    session.refresh(card)
    if done.rowcount == 1:  # type: ignore[attr-defined]
        accesslog.append(session, actor=actor, actor_label=actor_label, office=office, subject=card.resident,
                         action="card_lost", what=[{"card": card.id}], purpose="printed card",
                         outcome="revoked", now=moment)
    return card


def card_json(card: PrintedCard, now: dt.datetime | None = None) -> dict[str, Any]:
    return {"id": card.id, "resident": card.resident, "name": card.printed_name,
            "issued_at": aware(card.issued_at).isoformat(), "expires_at": aware(card.expires_at).isoformat(),
            "status": state_of(card, now), "lost_at": aware(card.lost_at).isoformat() if card.lost_at else None,
            "status_index": card.status_index}


def card_status_list(session: Session, keyring: Keyring, *, size: int, uri: str, ttl: int, validity: int,
                     now: float | None = None) -> str:
    """The card issuer's status list: a lost card is revoked; every card of a frozen identity suspended."""
    statuses: dict[int, int] = {}
    rows = session.execute(select(PrintedCard.status_index, PrintedCard.lost_at, Resident.frozen)
                           .join(Resident, Resident.pid == PrintedCard.resident)
                           .where(PrintedCard.lost_at.is_not(None) | Resident.frozen))
    for index, lost_at, frozen in rows:
        statuses[index] = INVALID if lost_at is not None else SUSPENDED if frozen else 0
    size = covering_size(size, session.scalar(select(func.max(PrintedCard.status_index))))
    return sign_status_list(keyring.signer(CARD_OFFICE.id), statuses, size=size, uri=uri, ttl=ttl,
                            validity=validity, now=now)
