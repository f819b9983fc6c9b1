"""Family helpers (亲友代办): a resident lets a named family member (another resident) show their code and answer
their requests, until an end date, revocable at any time (docs/without-a-smartphone.md).

Every use is in both residents' histories: one access-log entry about the resident, naming the helper, and one
about the helper, naming the resident. A helper may never approve a request that benefits the helper (the
request's ``beneficiary``). An ended grant is ``helper_revoked``, one past its end date ``helper_expired``. No Flask.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from codeservice.accesslog import service as accesslog
from codeservice.consent import service as consent
from codeservice.consent.models import ConsentRequest
from codeservice.consent.service import ConsentError
from codeservice.helpers.models import FamilyHelper
from codeservice.identity.residents import frozen_or_none, get_resident

MAX_DAYS = 366
T = TypeVar("T")


class HelperError(ConsentError):
    """A refused step of a family helper; ``reason`` is stable."""


def _utc(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes


def _name(session: Session, pid: str) -> str:
    found = get_resident(session, pid)
    return (found.display_name if found is not None and found.display_name else pid)[:200]


def log_both(session: Session, *, resident: str, helper: str, action: str, what: list[Any], outcome: str,
             purpose: str | None = None, office: str | None = None, now: dt.datetime | None = None) -> None:
    """One entry in each resident's history, each naming the other."""
    helper_name, resident_name = _name(session, helper), _name(session, resident)
    accesslog.append(session, actor=f"helper:{helper}", actor_label=f"{helper_name} (family helper)"[:300],
                     office=office, subject=resident, action=action, what=[{"helper": helper}, *what],
                     purpose=purpose, outcome=outcome[:64], now=now)
    accesslog.append(session, actor=f"helper:{helper}", actor_label="you", office=office, subject=helper,
                     action=action, what=[{"for": resident, "name": resident_name}, *what], purpose=purpose,
                     outcome=outcome[:64], now=now)


def state_of(grant: FamilyHelper, now: dt.datetime | None = None) -> str:
    if grant.ended_at is not None:
        return "ended"
    if aware(grant.until) <= _utc(now):
        return "expired"
    return "active"


def grant_json(session: Session, grant: FamilyHelper, now: dt.datetime | None = None) -> dict[str, Any]:
    return {"id": grant.id, "resident": grant.resident, "resident_name": _name(session, grant.resident),
            "helper": grant.helper, "helper_name": _name(session, grant.helper),
            "until": aware(grant.until).isoformat(), "created_at": aware(grant.created_at).isoformat(),
            "ended_at": aware(grant.ended_at).isoformat() if grant.ended_at else None, "status": state_of(grant, now)}


def add_helper(session: Session, resident: str, helper: str, until: dt.datetime,
               now: dt.datetime | None = None) -> FamilyHelper:
    """*resident* lets *helper* act for them until *until* (at most a year ahead)."""
    moment = _utc(now)
    if frozen_or_none(session, helper) is None:
        raise HelperError("not_found", "no resident with that id", 404)
    if helper == resident:
        raise HelperError("invalid_helper", "a resident cannot be their own helper", 422)
    until = aware(until)
    if not moment < until <= moment + dt.timedelta(days=MAX_DAYS):
        raise HelperError("invalid_until", f"the end date must be in the future and at most {MAX_DAYS} days ahead",
                          422)
    if any(state_of(g, moment) == "active" for g in grants_of(session, resident) if g.helper == helper):
        raise HelperError("helper_exists", "that helper already acts for this resident; end it first", 409)
    grant = FamilyHelper(id=secrets.token_hex(12), resident=resident, helper=helper, until=until, created_at=moment)
    session.add(grant)
    session.flush()
    log_both(session, resident=resident, helper=helper, action="helper_add", what=[], outcome="granted",
             purpose="family helper", now=moment)
    return grant


def grants_of(session: Session, resident: str) -> list[FamilyHelper]:
    """The helpers *resident* has named, newest first."""
    return list(session.scalars(select(FamilyHelper).where(FamilyHelper.resident == resident)
                                .order_by(FamilyHelper.created_at.desc(), FamilyHelper.id)))


def helping(session: Session, helper: str) -> list[FamilyHelper]:
    """The grants naming *helper*, newest first."""
    return list(session.scalars(select(FamilyHelper).where(FamilyHelper.helper == helper)
                                .order_by(FamilyHelper.created_at.desc(), FamilyHelper.id)))


def end_helper(session: Session, resident: str, grant_id: str, now: dt.datetime | None = None) -> FamilyHelper:
    """The resident ends a grant at once; ending it again changes nothing."""
    moment = _utc(now)
    grant = session.get(FamilyHelper, grant_id) if isinstance(grant_id, str) and len(grant_id) <= 32 else None
    if grant is None or grant.resident != resident:
        raise HelperError("not_found", "no such helper", 404)
    done = session.execute(update(FamilyHelper).where(FamilyHelper.id == grant.id, FamilyHelper.ended_at.is_(None))
                           .values(ended_at=moment).execution_options(synchronize_session=False))
    session.refresh(grant)
    if done.rowcount == 1:  # type: ignore[attr-defined]
        log_both(session, resident=resident, helper=grant.helper, action="helper_end", what=[], outcome="revoked",
                 purpose="family helper", now=moment)
    return grant


def check_grant(session: Session, helper: str, resident: str, now: dt.datetime | None = None) -> FamilyHelper:
    """The active grant by which *helper* acts for *resident*; refused (and logged) otherwise. Fails closed."""
    moment = _utc(now)
    grants = [g for g in grants_of(session, resident) if g.helper == helper]
    active = [g for g in grants if state_of(g, moment) == "active"]
    if active:
        if frozen_or_none(session, resident) is not False:
            raise HelperError("identity_frozen", "the resident's identity is frozen", 403)
        return active[0]
    if not grants:
        raise HelperError("not_helper", "you are not a helper of this resident", 403)
    if state_of(grants[0], moment) == "ended":  # the newest grant decides
        raise HelperError("helper_revoked", "this resident ended your help", 403)
    raise HelperError("helper_expired", "your help for this resident has passed its end date", 403)


class Wiring(Protocol):
    """What the helper's steps need of the service's parts (``codeservice.services.Services``)."""

    def transaction(self) -> Any: ...

    def issue_identity_code(self, pid: str, now: float | None = None) -> str: ...

    @property
    def settings(self) -> Any: ...


def _refused(wiring: Wiring, helper: str, resident: str, action: str, exc: HelperError) -> HelperError:
    """Log a refused use in both histories (when the resident exists), in its own transaction; return it to raise."""
    with wiring.transaction() as db:
        if frozen_or_none(db, resident) is not None:
            log_both(db, resident=resident, helper=helper, action=action, what=[], outcome=f"refused: {exc.reason}",
                     purpose="family helper")
    return exc


def code_for(wiring: Wiring, helper: str, resident: str) -> str:
    """The resident's identity code, for the helper to show; logged in both histories."""
    try:
        with wiring.transaction() as db:
            check_grant(db, helper, resident)
            log_both(db, resident=resident, helper=helper, action="helper_code", what=[], outcome="shown",
                     purpose="family helper")
    except HelperError as exc:
        raise _refused(wiring, helper, resident, "helper_code", exc) from None
    return wiring.issue_identity_code(resident)


def pending_for(wiring: Wiring, helper: str, resident: str,
                view: Callable[[Session, list[ConsentRequest]], T]) -> T:
    """*view* of the resident's pending requests, for their helper."""
    try:
        with wiring.transaction() as db:
            check_grant(db, helper, resident)
            return view(db, consent.pending_for(db, resident))
    except HelperError as exc:
        raise _refused(wiring, helper, resident, "helper_view", exc) from None


def answer_for(wiring: Wiring, helper: str, resident: str, request_id: str, approve: list[dict[str, Any]] | None,
               view: Callable[[Session, ConsentRequest], T], *, everything: bool = False) -> T:
    """The helper answers the resident's request: as ``ConsentService.answer``, except that a helper never approves a
    request that benefits the helper (``helper_is_beneficiary``); logged in both histories."""
    error: ConsentError | None = None
    try:
        with wiring.transaction() as db:
            check_grant(db, helper, resident)
            made = db.get(ConsentRequest, request_id) if consent.plausible_id(request_id) else None
            if made is None or made.resident != resident:
                raise ConsentError("not_found", "no such request", 404)
            approving = everything or bool(approve)
            if approving and (made.beneficiary or made.resident) == helper:
                raise HelperError("helper_is_beneficiary", "a helper cannot approve a request that benefits the "
                                  "helper; the resident must answer it", 403)
            if everything:
                approve = [{"type": i["type"], "fields": list(i["fields"])} for i in made.items]
            try:
                answered = consent.decide(db, resident, request_id, approve=approve,
                                          fetch_minutes=wiring.settings.consent_fetch_minutes,
                                          actor=f"helper:{helper}",
                                          actor_label=f"{_name(db, helper)} (family helper)"[:300])
            except ConsentError as exc:
                error = exc
            else:
                accesslog.append(db, actor=f"helper:{helper}", actor_label="you", office=answered.office_id,
                                 subject=helper, action="approve" if answered.status == "approved" else "refuse",
                                 what=[{"for": resident, "name": _name(db, resident)}, *(answered.approved or [])],
                                 purpose=answered.purpose, outcome=f"{answered.status} for {resident}"[:64])
                out = view(db, answered)
    except HelperError as exc:
        raise _refused(wiring, helper, resident, "helper_answer", exc) from None
    if error is not None:
        raise error
    return out
