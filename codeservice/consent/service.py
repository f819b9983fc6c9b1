"""The consented pull at a service window, queue tickets, and what residents read in their history.

Every state change is one conditional UPDATE (``... WHERE status = 'pending'`` and so on), so two
approvals, two fetches or a fetch racing an expiry can never both succeed, on SQLite or PostgreSQL,
in one process or many. Every step is appended to the access log in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from codeservice.accesslog import service as accesslog
from codeservice.accesslog.models import AccessLogEntry
from codeservice.certificates.models import Certificate, CertType
from codeservice.certificates.service import CertificateError, certificates_of, disclosable, disclosed_values
from codeservice.clients.models import ApiClient
from codeservice.config import Settings
from codeservice.consent.models import ConsentRequest, Office, QueueTicket
from codeservice.dashboard.counts import PULL, count_certificate_use
from codeservice.identity.residents import frozen_or_none
from codeservice.state import StateStore
from issuers.keyring import Keyring
from issuers.sdjwt import issue_sd_jwt
from sdk.citytime import CITY_TZ
from verifiers.online import OnlineVerifier

_SLUG = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
ANSWER_MINUTES = 5
FETCH_MINUTES = 3


class ConsentError(Exception):
    """A refused step. ``reason`` is stable (for clients and the log); ``status`` the HTTP status (400 unless said;
    the JSON API answers that one 422: its document refused a malformed request before this module saw it)."""

    def __init__(self, reason: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.reason, self.message, self.status = reason, message, status


def _utc(now: dt.datetime | None) -> dt.datetime:
    return now or dt.datetime.now(dt.UTC)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes


def actor_of(client: ApiClient, office: Office | None) -> tuple[str, str]:
    label = client.name if office is None else f"{client.name}, {office.name}"
    return f"{client.role}:{client.id}", label


# -- offices -------------------------------------------------------------------------------------
def _clean_asks(session: Session, office_cert_types: list[str], purpose: str, asks: Any) -> list[dict[str, Any]]:
    """*asks* of one purpose, ``[{type, fields}]``: types the office may request, fields of them a holder may
    show, each once."""
    if not isinstance(asks, list) or not asks:
        raise CertificateError(f"purpose {purpose!r}: name at least one certificate type and its fields")
    clean: list[dict[str, Any]] = []
    for ask in asks:
        if not isinstance(ask, Mapping) or not isinstance(ask.get("type"), str):
            raise CertificateError(f"purpose {purpose!r}: each ask names a certificate type")
        code, fields = ask["type"], ask.get("fields")
        if code not in office_cert_types:
            raise CertificateError(f"purpose {purpose!r}: the office may not request {code} certificates")
        cert_type = session.get(CertType, code)
        if cert_type is None:
            raise CertificateError(f"no certificate type {code!r}")
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
            raise CertificateError(f"purpose {purpose!r}: {code} needs a non-empty list of fields")
        unknown = sorted(set(fields) - {d["name"] for d in disclosable(cert_type)})
        if unknown:
            raise CertificateError(f"purpose {purpose!r}: {code} has no field a holder may show named "
                                   f"{', '.join(unknown)}")
        if any(c["type"] == code for c in clean):
            raise CertificateError(f"purpose {purpose!r}: {code} is named twice")
        clean.append({"type": code, "fields": list(dict.fromkeys(fields))})
    return clean


def every_field(session: Session, cert_types: list[str]) -> list[dict[str, Any]]:
    """Every field a holder may show of each of *cert_types*: what a purpose asks unless told otherwise."""
    out = []
    for code in cert_types:
        cert_type = session.get(CertType, code)
        names = [d["name"] for d in disclosable(cert_type)] if cert_type is not None else []
        if names:
            out.append({"type": code, "fields": names})
    return out


def add_office(
    session: Session, office_id: str, name: str, purposes: list[str], cert_types: list[str],
    services: list[str] | None = None, asks: Mapping[str, Any] | None = None,
) -> Office:
    """An office; *asks* names what each purpose may ask for (``{purpose: [{type, fields}]}``). A purpose it
    leaves out may ask every field of every type in *cert_types* (``set_purpose_asks`` narrows it)."""
    if not _SLUG.match(office_id or ""):
        raise CertificateError("office id: 2-64 lowercase letters, digits and dashes")
    if not name or len(name) > 200:
        raise CertificateError("office name: 1 to 200 characters")
    if not purposes or not all(isinstance(p, str) and 0 < len(p) <= 300 for p in purposes):
        raise CertificateError("an office states at least one purpose (1 to 300 characters each)")
    for code in cert_types:
        if session.get(CertType, code) is None:
            raise CertificateError(f"no certificate type {code!r}")
    if session.get(Office, office_id) is not None:
        raise CertificateError(f"office {office_id!r} exists already")
    given = dict(asks or {})
    stray = sorted(set(given) - set(purposes))
    if stray:
        raise CertificateError(f"not a purpose of the office: {', '.join(stray)}")
    purpose_asks = {p: _clean_asks(session, list(cert_types), p, given[p]) if p in given
                    else every_field(session, list(cert_types)) for p in purposes}
    office = Office(id=office_id, name=name, purposes=list(purposes), cert_types=list(cert_types),
                    services=list(services or []), purpose_asks=purpose_asks)
    session.add(office)
    session.flush()
    return office


def set_purpose_asks(session: Session, office_id: str, purpose: str, asks: Any) -> Office:
    """What *purpose* of the office may ask for, ``[{type, fields}]``; a purpose the office lacks is added."""
    office = session.get(Office, office_id) if isinstance(office_id, str) else None
    if office is None:
        raise CertificateError(f"no office {office_id!r}")
    if not isinstance(purpose, str) or not 0 < len(purpose) <= 300:
        raise CertificateError("a purpose: 1 to 300 characters")
    clean = _clean_asks(session, list(office.cert_types), purpose, asks)
    office.purpose_asks = {**(office.purpose_asks or {}), purpose: clean}
    if purpose not in office.purposes:
        office.purposes = [*office.purposes, purpose]
    session.flush()
    return office


def asks_of(office: Office, purpose: str) -> list[dict[str, Any]]:
    """What *purpose* may ask for at *office* (nothing for a purpose it does not state)."""
    if purpose not in office.purposes:
        return []
    return list((office.purpose_asks or {}).get(purpose, []))


# -- the request ---------------------------------------------------------------------------------
def _validate_items(session: Session, office: Office, purpose: str, items: Any) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not items:
        raise ConsentError("invalid_body", "items: a non-empty list of {type, fields}")
    clean: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise ConsentError("invalid_body", "each item names a certificate type")
        code, fields = item["type"], item.get("fields")
        if code not in office.cert_types:
            raise ConsentError("type_not_allowed", f"{office.name} may not request {code} certificates", 403)
        cert_type = session.get(CertType, code)
        assert cert_type is not None
        allowed = {d["name"] for d in disclosable(cert_type)}
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
            raise ConsentError("invalid_body", f"{code}: fields must be a non-empty list of names")
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ConsentError("invalid_body", f"{code}: cannot request {', '.join(unknown)}")
        if any(c["type"] == code for c in clean):
            raise ConsentError("invalid_body", f"{code} is requested twice")
        clean.append({"type": code, "fields": list(dict.fromkeys(fields))})
    needed = {a["type"]: set(a["fields"]) for a in asks_of(office, purpose)}
    for item in clean:
        beyond = sorted(set(item["fields"]) - needed.get(item["type"], set()))
        if beyond:
            what = item["type"] if item["type"] not in needed else f"{item['type']} {', '.join(beyond)}"
            raise ConsentError("not_needed_for_purpose", f"{purpose} does not need {what}; ask only for what "
                                                         "the purpose needs", 422)
    return clean


def create_request(
    session: Session, clerk: ApiClient, *, resident: str, purpose: str, items: Any, keep_minutes: int = 30,
    answer_minutes: int = ANSWER_MINUTES, now: dt.datetime | None = None, beneficiary: str | None = None,
) -> ConsentRequest:
    """*resident* comes from a verified identity code; everything else is checked here. *beneficiary*: the resident
    the request benefits when not *resident* (a family helper may never approve a request benefiting the helper)."""
    moment = _utc(now)
    office = session.get(Office, clerk.office_id) if clerk.office_id else None
    if office is None:
        raise ConsentError("forbidden", "this clerk belongs to no office", 403)
    actor, label = actor_of(clerk, office)
    if purpose not in office.purposes:
        accesslog.append(session, actor=actor, actor_label=label, office=office.id, subject=resident,
                         action="request", what=[], purpose=str(purpose)[:300], outcome="refused: purpose")
        raise ConsentError("purpose_not_allowed", f"{office.name} may not state that purpose", 403)
    clean = _validate_items(session, office, purpose, items)
    if type(keep_minutes) is not int or not 1 <= keep_minutes <= 7 * 24 * 60:
        raise ConsentError("invalid_body", "keep_minutes: 1 to 10080")
    if beneficiary == resident:
        beneficiary = None
    if beneficiary is not None and frozen_or_none(session, beneficiary) is None:
        raise ConsentError("unknown_beneficiary", "no resident with that id benefits from the request")
    request = ConsentRequest(
        id=secrets.token_hex(12), resident=resident, clerk_id=clerk.id, office_id=office.id, purpose=purpose,
        items=clean, status="pending", created_at=moment, answer_by=moment + dt.timedelta(minutes=answer_minutes),
        keep_minutes=keep_minutes, beneficiary=beneficiary,
    )
    session.add(request)
    session.flush()
    accesslog.append(session, actor=actor, actor_label=label, office=office.id, subject=resident, action="request",
                     what=clean, purpose=purpose, outcome="pending", now=moment)
    return request


def expire_overdue(session: Session, now: dt.datetime | None = None, resident: str | None = None) -> int:
    """Mark unanswered requests past their deadline as expired (each logged once); the session's copies of
    them say so too."""
    moment = _utc(now)
    query = select(ConsentRequest).where(ConsentRequest.status == "pending", ConsentRequest.answer_by < moment) \
        .order_by(ConsentRequest.id)  # one order for every writer: no two wait on each other's rows
    if resident is not None:
        query = query.where(ConsentRequest.resident == resident)
    expired = 0
    for request in session.scalars(query):
        done = session.execute(update(ConsentRequest).where(ConsentRequest.id == request.id,
                                                            ConsentRequest.status == "pending")
                               .values(status="expired").execution_options(synchronize_session=False))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            expired += 1
            set_committed_value(request, "status", "expired")
            office = session.get(Office, request.office_id)
            accesslog.append(session, actor="system", actor_label="citycode", office=request.office_id,
                             subject=request.resident, action="expire", what=request.items, purpose=request.purpose,
                             outcome=f"unanswered request from {office.name if office else request.office_id}",
                             now=moment)
    return expired


def _own_request(session: Session, request_id: str, resident: str) -> ConsentRequest:
    request = session.get(ConsentRequest, request_id) if isinstance(request_id, str) else None
    if request is None or request.resident != resident:
        raise ConsentError("not_found", "no such request", 404)
    return request


def describe_request(session: Session, request: ConsentRequest) -> dict[str, Any]:
    """What the resident's phone shows: who asks, for what, which certificate and fields."""
    office = session.get(Office, request.office_id)
    clerk = session.get(ApiClient, request.clerk_id)
    held = valid_certificates(session, request.resident)
    items = []
    for item in request.items:
        cert_type = session.get(CertType, item["type"])
        labels = {d["name"]: d["label"] for d in disclosable(cert_type)} if cert_type else {}
        cert = held.get(item["type"])
        items.append({"type": item["type"], "type_name": cert_type.name if cert_type else item["type"],
                      "cert_id": cert.id if cert else None, "held": cert is not None,
                      "fields": [{"name": f, "label": labels.get(f, f)} for f in item["fields"]]})
    return {"id": request.id, "office": office.name if office else request.office_id,
            "clerk": clerk.name if clerk else "", "purpose": request.purpose, "items": items,
            "status": request.status, "answer_by": _aware(request.answer_by).isoformat(),
            "keep_minutes": request.keep_minutes, "created_at": _aware(request.created_at).isoformat()}


def valid_certificates(session: Session, resident: str) -> dict[str, Certificate]:
    """The resident's valid certificates by type, read once a transaction (``session.info``): an answer and the
    description of it that follows, in the same transaction, need the same ones."""
    cache: dict[str, dict[str, Certificate]] = session.info.setdefault("citycode.consent.valid_certificates", {})
    held = cache.get(resident)
    if held is None:
        held = cache[resident] = {c.type_code: c for c in certificates_of(session, resident) if c.status == "valid"}
    return held


def pending_for(session: Session, resident: str, now: dt.datetime | None = None) -> list[ConsentRequest]:
    expire_overdue(session, now, resident)
    return list(session.scalars(select(ConsentRequest).where(ConsentRequest.resident == resident,
                                                             ConsentRequest.status == "pending")
                                .order_by(ConsentRequest.created_at.desc())))


def decide(
    session: Session, resident: str, request_id: str, *, approve: Any, now: dt.datetime | None = None,
    fetch_minutes: int = FETCH_MINUTES, actor: str | None = None, actor_label: str = "you",
) -> ConsentRequest:
    """*approve*: None or [] to refuse; else a subset of the request's items [{type, fields}]. *actor* and
    *actor_label*: who answered when not the resident (a family helper)."""
    moment = _utc(now)
    request = _own_request(session, request_id, resident)
    expire_overdue(session, moment, resident)  # this request too, when it is overdue (its status says so then)
    if request.status != "pending":
        raise ConsentError("not_pending", f"this request is {request.status}", 409)
    approved: list[dict[str, Any]] = []
    if approve:
        if not isinstance(approve, list):
            raise ConsentError("invalid_body", "approve: a list of {type, fields}")
        asked = {i["type"]: set(i["fields"]) for i in request.items}
        held = valid_certificates(session, resident)
        for item in approve:
            if not isinstance(item, Mapping) or not isinstance(item.get("type"), str) or item["type"] not in asked:
                raise ConsentError("invalid_body", "approve only certificate types that were asked for")
            if any(a["type"] == item["type"] for a in approved):
                raise ConsentError("invalid_body", f"{item['type']} is approved twice")
            fields = item.get("fields")
            if (not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields)
                    or not set(fields) <= asked[item["type"]]):
                raise ConsentError("invalid_body", f"{item['type']}: approve a non-empty subset of the fields asked")
            cert = held.get(item["type"])
            if cert is None:
                raise ConsentError("not_held", f"you hold no valid {item['type']} certificate", 409)
            approved.append({"cert_id": cert.id, "type": cert.type_code, "fields": list(dict.fromkeys(fields))})
    status = "approved" if approved else "refused"
    answer = {"status": status, "approved": approved or None, "decided_at": moment,
              "fetch_by": moment + dt.timedelta(minutes=fetch_minutes) if approved else None}
    done = session.execute(
        update(ConsentRequest).where(ConsentRequest.id == request.id, ConsentRequest.status == "pending")
        .values(**answer).execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise ConsentError("not_pending", "this request was answered already", 409)
    for name, value in answer.items():  # what the UPDATE wrote is what the session's copy holds, unflushed
        set_committed_value(request, name, value)
    office = session.get(Office, request.office_id)
    accesslog.append(session, actor=actor or f"resident:{resident}", actor_label=actor_label,
                     office=request.office_id, subject=resident, action="approve" if approved else "refuse",
                     what=approved or request.items,
                     purpose=request.purpose,
                     outcome=f"{status} for {office.name if office else request.office_id}", now=moment)
    return request


def fetch(
    session: Session, keyring: Keyring, clerk: ApiClient, request_id: str, *, items: Any = None,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Release the approved certificates once, to the clerk who asked, within the fetch window, while the
    resident's identity is not frozen. Every refusal of a known request is logged here."""
    moment = _utc(now)
    office = session.get(Office, clerk.office_id) if clerk.office_id else None
    actor, label = actor_of(clerk, office)
    request = session.get(ConsentRequest, request_id) if isinstance(request_id, str) else None

    def refuse(reason: str, message: str, status: int) -> ConsentError:
        if request is not None:
            accesslog.append(session, actor=actor, actor_label=label, office=clerk.office_id,
                             subject=request.resident, action="fetch", what=request.approved or request.items,
                             purpose=request.purpose, outcome=f"refused: {reason}", now=moment)
        return ConsentError(reason, message, status)

    if request is None:
        raise ConsentError("not_found", "no such request", 404)
    if request.clerk_id != clerk.id:
        raise refuse("other_clerk", "this request was made by another clerk", 403)
    if request.status == "fetched":
        raise refuse("already_fetched", "the certificates were fetched already", 409)
    if request.status != "approved":
        raise refuse("not_approved", f"this request is {request.status}", 409)
    # frozen after approving (a lost phone may have given that approval), or no longer known: nothing released
    if frozen_or_none(session, request.resident) is not False:
        raise refuse("identity_frozen", "the resident's identity is frozen; nothing is released", 403)
    approved = request.approved or []
    if items is not None:
        well_formed = isinstance(items, list) and items and all(
            isinstance(i, Mapping) and isinstance(i.get("type"), str) and isinstance(i.get("fields"), list)
            and i["fields"] and all(isinstance(f, str) for f in i["fields"]) for i in items)
        if not well_formed:  # an empty or malformed selection must not use up the one fetch
            raise ConsentError("invalid_body", "items: a non-empty list of {type, fields}")
        wanted = {i["type"]: set(i["fields"]) for i in items}
        granted = {i["type"]: set(i["fields"]) for i in approved}
        if any(t not in granted or not f <= granted[t] for t, f in wanted.items()):
            raise refuse("not_approved", "asked for something the resident did not approve", 403)
        approved = [{**i, "fields": [f for f in i["fields"] if f in wanted[i["type"]]]}
                    for i in approved if i["type"] in wanted]
    assert request.fetch_by is not None
    if moment > _aware(request.fetch_by):
        raise refuse("window_closed", "the fetch window has closed", 410)
    done = session.execute(
        update(ConsentRequest).where(ConsentRequest.id == request.id, ConsentRequest.status == "approved",
                                     ConsentRequest.clerk_id == clerk.id)
        .values(status="fetched", fetched_at=moment).execution_options(synchronize_session=False))
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise refuse("already_fetched", "the certificates were fetched already", 409)
    released = []
    pulled: dict[str, int] = {}  # certificates released per issuing department
    for item in approved:
        cert = session.get(Certificate, item["cert_id"])
        cert_type = session.get(CertType, item["type"])
        if cert is None or cert_type is None or cert.status != "valid":
            continue
        names = [d["name"] for d in disclosable(cert_type)]
        values = disclosed_values(cert, cert_type, names, moment.astimezone(CITY_TZ).date())
        plain = {"cert_id": cert.id, "type": cert.type_code, "holder": cert.holder,
                 "valid_from": cert.valid_from.isoformat(), "valid_until": cert.valid_until.isoformat(),
                 "status": {"status_list": {"idx": cert.status_index, "uri": cert.department_id}}}
        token = issue_sd_jwt(keyring.signer(cert.department_id), plain, values, item["fields"],
                             lifetime=request.keep_minutes * 60, now=moment.timestamp())
        released.append({"type": cert.type_code, "cert_id": cert.id, "fields": item["fields"], "sd_jwt": token})
        pulled[cert.department_id] = pulled.get(cert.department_id, 0) + 1
    accesslog.append(session, actor=actor, actor_label=label, office=clerk.office_id, subject=request.resident,
                     action="fetch", what=[{k: i[k] for k in ("type", "cert_id", "fields")} for i in released],
                     purpose=request.purpose, outcome="released", now=moment)
    for department, n in pulled.items():  # the data office's count of consented pulls, in this transaction
        count_certificate_use(session, department, PULL, moment.timestamp(), n)
    return released


# -- queue tickets (取号) ---------------------------------------------------------------------------
def issue_ticket(
    session: Session, device: ApiClient, resident: str, service: str, now: dt.datetime | None = None,
) -> QueueTicket:
    moment = _utc(now)
    office = session.get(Office, device.office_id) if device.office_id else None
    if office is None:
        raise ConsentError("forbidden", "this device belongs to no office", 403)
    if service not in office.services:
        raise ConsentError("unknown_service", f"{office.name} has no queue for {service!r}", 400)
    day = moment.astimezone(CITY_TZ).date()
    for _ in range(20):
        number = (session.scalar(select(func.max(QueueTicket.number)).where(
            QueueTicket.office_id == office.id, QueueTicket.service == service, QueueTicket.day == day)) or 0) + 1
        ticket = QueueTicket(office_id=office.id, service=service, day=day, number=number, resident=resident,
                             status="waiting", issued_at=moment)
        try:
            with session.begin_nested():
                session.add(ticket)
                session.flush()
        except IntegrityError:
            continue
        actor, label = actor_of(device, office)
        accesslog.append(session, actor=actor, actor_label=label, office=office.id, subject=resident,
                         action="ticket", what=[{"service": service, "number": number}], purpose="queue number",
                         outcome="issued", now=moment)
        return ticket
    raise ConsentError("busy", "the queue is busy; try again", 503)


def call_next(
    session: Session, clerk: ApiClient, service: str, now: dt.datetime | None = None,
) -> QueueTicket | None:
    moment = _utc(now)
    if not clerk.office_id:
        raise ConsentError("forbidden", "this clerk belongs to no office", 403)
    for _ in range(20):
        ticket = session.scalars(select(QueueTicket).where(
            QueueTicket.office_id == clerk.office_id, QueueTicket.service == service,
            QueueTicket.day == moment.astimezone(CITY_TZ).date(), QueueTicket.status == "waiting")
            .order_by(QueueTicket.number)
            .limit(1)).first()
        if ticket is None:
            return None
        done = session.execute(update(QueueTicket).where(QueueTicket.id == ticket.id, QueueTicket.status == "waiting")
                               .values(status="called", called_at=moment, called_by=clerk.id)
                               .execution_options(synchronize_session=False))
        if done.rowcount == 1:  # type: ignore[attr-defined]
            session.refresh(ticket)
            return ticket
    return None


# -- what the resident reads -----------------------------------------------------------------------
_VERBS = {
    "request": "asked for", "approve": "you approved", "refuse": "you refused", "fetch": "took",
    "expire": "request expired for", "check": "checked", "ticket": "gave you a queue number at",
}


_REFUSALS = {
    "already_fetched": "it had been taken once already", "other_clerk": "another clerk had asked for it",
    "not_approved": "you had not approved it", "window_closed": "the time to take it had passed",
    "not_found": "there was no such request", "purpose": "that office may not state that purpose",
    "rate limit": "too many requests", "identity_frozen": "your identity was frozen",
    "type_not_allowed": "they may not ask about that certificate",
    "predicate_not_allowed": "they may not ask that question", "unknown_service": "there is no such queue",
    "unknown_type": "there is no such certificate type", "invalid_value": "that is not a question about it",
    "busy": "the queue was busy",
    "not_needed_for_purpose": "the purpose did not need it",
}


def _why(outcome: str) -> str:
    reason = outcome.removeprefix("refused").lstrip(": ").strip()
    if reason.startswith("code "):
        return "the code shown was not accepted"
    return _REFUSALS.get(reason, reason.replace("_", " ")) or "refused"


def city_time(at: str) -> dt.datetime:
    """An entry's moment, stored (and hashed) as UTC text, in city time (CITY_TZ), as residents read clocks."""
    return dt.datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(CITY_TZ)


def sentence(
    entry: AccessLogEntry, type_names: Mapping[str, str], field_labels: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """One entry in plain language, e.g. 'Window 3, Xuzhou service hall took your business licence for
    a food-licence renewal, 14:02' (the time in city time). *field_labels* ((type, field) -> label) names
    fields as people do."""
    labels = field_labels or {}

    def fields_of(item: Mapping[str, Any]) -> str:
        return ", ".join(labels.get((item.get("type", ""), f), f) for f in item.get("fields", []))

    things = ", ".join(
        f"your {type_names.get(i.get('type', ''), i.get('type', 'data'))} ({fields_of(i)})"
        for i in entry.what if isinstance(i, Mapping) and "type" in i) or "your identity"
    when = city_time(entry.at).strftime("%H:%M")
    purpose = f" for {entry.purpose}" if entry.purpose else ""
    who = entry.actor_label
    if entry.action == "fetch":
        if entry.outcome == "released":
            return f"{who} took {things}{purpose}, {when}"
        return f"{who} tried to take {things}{purpose}; refused: {_why(entry.outcome)}, {when}"
    if entry.action == "request":
        if entry.outcome == "pending":
            return f"{who} asked for {things}{purpose}, {when}"
        if entry.outcome.startswith("refused"):
            return f"{who} asked for {things}{purpose}; refused: {_why(entry.outcome)}, {when}"
    if entry.action == "approve":
        return f"You let {entry.outcome.removeprefix('approved for ')} take {things}{purpose}, {when}"
    if entry.action == "refuse":
        return f"You refused {entry.outcome.removeprefix('refused for ')} {things}{purpose}, {when}"
    if entry.action == "expire":
        return f"A request for {things}{purpose} expired unanswered, {when}"
    if entry.action == "ticket":
        service = entry.what[0].get("service") if entry.what and isinstance(entry.what[0], Mapping) else None
        if entry.outcome.startswith("refused"):
            return f"{who} did not give you a queue number ({service}); refused: {_why(entry.outcome)}, {when}"
        return f"{who} gave you queue number {entry.what[0].get('number')} ({service}), {when}"
    if entry.action == "check":
        if entry.outcome.startswith("refused"):
            return f"{who} tried to check whether you hold {things}{purpose}; refused: {_why(entry.outcome)}, {when}"
        return f"{who} checked whether you hold {things}{purpose}: {entry.outcome}, {when}"
    verb = _VERBS.get(entry.action, entry.action)
    return f"{who} {verb} {things}{purpose} ({entry.outcome}), {when}"


#: Puts an entry in words from the certificate types (the /history page does, in the reader's language).
Describe = Callable[[AccessLogEntry, list[CertType]], str]


def history(session: Session, subject: str, limit: int = 100, now: dt.datetime | None = None,
            describe: Describe | None = None) -> list[dict[str, Any]]:
    """What the resident reads (the JSON API and the /history page alike): first the subject's unanswered
    requests past their deadline are expired (and logged), then their entries, newest first, in plain language
    (``sentence``, English, unless *describe* puts them in words)."""
    expire_overdue(session, now, subject)
    types = list(session.scalars(select(CertType)))
    names = {t.code: t.name.split(" (")[0].lower() for t in types}
    labels = {(t.code, d["name"]): d["label"][:1].lower() + d["label"][1:] for t in types for d in disclosable(t)}
    entries = accesslog.entries_about(session, subject, limit)
    return [{"seq": e.seq, "at": e.at, "action": e.action, "who": e.actor_label, "purpose": e.purpose,
             "outcome": e.outcome, "text": describe(e, types) if describe else sentence(e, names, labels)}
            for e in entries]


# -- the consent service: every step in its own unit of work, with every rule ---------------------------------
MAX_CODE_CHARS = 4096
T = TypeVar("T")


class Wiring(Protocol):
    """What the consent service needs of the service's parts; ``codeservice.services.Services`` has it all."""

    @property
    def state(self) -> StateStore: ...

    @property
    def online(self) -> OnlineVerifier: ...

    @property
    def keyring(self) -> Keyring: ...

    @property
    def settings(self) -> Settings: ...

    def transaction(self) -> AbstractContextManager[Session]: ...


class CodeRefused(ConsentError):
    """The identity code shown was not accepted; ``refusal`` is the verifier's reason (and its detail)."""

    def __init__(self, refusal: str) -> None:
        super().__init__("code_refused", f"the identity code was refused: {refusal}", 400)
        self.refusal = refusal


def plausible_id(request_id: str) -> bool:
    """Request ids are 24 hex digits; anything else is not found without asking the database."""
    return 1 <= len(request_id) <= 32 and request_id.isascii() and request_id.isalnum()


def printable(text: str, limit: int) -> str:
    """For the log: no control characters (PostgreSQL refuses NUL), bounded length."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


class ConsentService:
    """The consented pull and the queue as steps of clerks, devices and residents.

    The JSON API (consent/api.py) and the pages (consent/clerk.py, consent/resident.py) are adapters over
    it; the rules live here once: the client's allowance a minute (the refused attempt is logged), a
    refused step logged in the access log and committed although the step raises, the identity code
    verified as at a service window, and the access log's checkpoint signed after the commit
    (``Wiring.transaction``). A refusal is raised as ``ConsentError`` after its transaction has committed.
    """

    scene = "service-window"  # a clerk may scan a code again while it lives

    def __init__(self, wiring: Wiring) -> None:
        self._wiring = wiring

    # -- rules every step of a clerk or a device obeys --------------------------------------------------
    def check_rate(self, client: ApiClient, *, method: str, path: str) -> None:
        """Count one step against the client's allowance a minute. Raises ``state.StateError`` when the
        state store cannot count, and ``ConsentError('rate_limited')`` beyond it, once the attempt is logged."""
        used = self._wiring.state.count(f"rate:{{{client.id}}}", 60)  # the rate limit's key (accesslog/ratelimit.py)
        if used <= client.rate_per_minute:
            return
        with self._wiring.transaction() as db:
            actor, label = self._actor(db, client)
            accesslog.append(db, actor=actor, actor_label=label, office=client.office_id, action="rate_limited",
                             what=[{"method": method, "path": printable(path, 200)}], outcome="refused")
        raise ConsentError("rate_limited", f"more than {client.rate_per_minute} requests a minute from this "
                                           f"{client.role}; the attempt was logged; try again in a minute", 403)

    @staticmethod
    def _actor(db: Session, client: ApiClient) -> tuple[str, str]:
        office = db.get(Office, client.office_id) if client.office_id else None
        return actor_of(client, office)

    def _log_refusal(self, db: Session, client: ApiClient, *, action: str, reason: str, subject: str | None = None,
                     purpose: str | None = None, what: list[Any] | None = None) -> None:
        actor, label = self._actor(db, client)
        accesslog.append(db, actor=actor, actor_label=label, office=client.office_id, subject=subject, action=action,
                         what=what or [], purpose=purpose[:300] if purpose else None,
                         outcome=f"refused: {reason}"[:64])

    def _resident_of(self, db: Session, code: str) -> tuple[str | None, str | None]:
        """(pid, None) for a valid identity code of an unfrozen resident, else (pid or None, refusal)."""
        if len(code) > MAX_CODE_CHARS:
            return None, "not_a_citycode: too long"
        result = self._wiring.online.verify(code, self.scene)
        subject = result.subject  # set only when the signature verified
        if not result.accepted:
            return subject, result.reason.value + (f": {result.detail}" if result.detail else "")
        if result.kind != "id" or subject is None:
            return None, "wrong_kind: not an identity code"
        frozen = frozen_or_none(db, subject)
        if frozen is None:
            return subject, "suspended: no such resident"
        if frozen:
            return subject, "suspended: identity frozen"
        return subject, None

    # -- the clerk ------------------------------------------------------------------------------------
    def request(self, clerk: ApiClient, *, code: str, purpose: str, items: list[dict[str, Any]],
                keep_minutes: int, beneficiary: str | None = None) -> ConsentRequest:
        """Ask the resident whose identity *code* this is for *items*; the request, pending."""
        error: ConsentError | None = None
        with self._wiring.transaction() as db:
            subject, refusal = self._resident_of(db, code)
            if refusal is not None:
                self._log_refusal(db, clerk, action="request", reason=f"code {refusal}", subject=subject,
                                  purpose=purpose, what=items)
                error = CodeRefused(refusal)
            else:
                assert subject is not None
                try:
                    made = create_request(db, clerk, resident=subject, purpose=purpose, items=items,
                                          keep_minutes=keep_minutes,
                                          answer_minutes=self._wiring.settings.consent_answer_minutes,
                                          beneficiary=beneficiary)
                except ConsentError as exc:
                    if exc.reason != "purpose_not_allowed":  # create_request logged that one itself
                        self._log_refusal(db, clerk, action="request", reason=exc.reason, subject=subject,
                                          purpose=purpose, what=items)
                    error = exc
        if error is not None:
            raise error
        return made

    def clerk_request(self, clerk: ApiClient, request_id: str, view: Callable[[Session, ConsentRequest], T]) -> T:
        """*view* of one of the clerk's own requests, an overdue one expired first; another's is not found."""
        with self._wiring.transaction() as db:
            made = db.get(ConsentRequest, request_id) if plausible_id(request_id) else None
            if made is not None and made.clerk_id == clerk.id:
                if made.status == "pending" and expire_overdue(db, resident=made.resident):
                    db.refresh(made)
                return view(db, made)
        raise ConsentError("not_found", "no such request", 404)

    def fetch(self, clerk: ApiClient, request_id: str, items: list[dict[str, Any]] | None = None
              ) -> list[dict[str, Any]]:
        """The approved certificates, once (see ``fetch``); a refusal is logged."""
        error: ConsentError | None = None
        with self._wiring.transaction() as db:
            try:
                if not plausible_id(request_id):
                    raise ConsentError("not_found", "no such request", 404)
                released = fetch(db, self._wiring.keyring, clerk, request_id, items=items)
            except ConsentError as exc:
                if exc.reason == "not_found":  # fetch() logs every other refusal itself (a frozen identity too)
                    self._log_refusal(db, clerk, action="fetch", reason="not_found",
                                      what=[{"request": printable(request_id, 64)}])
                error = exc
        if error is not None:
            raise error
        return released

    def call_next(self, clerk: ApiClient, service: str) -> QueueTicket | None:
        with self._wiring.transaction() as db:
            return call_next(db, clerk, service)

    # -- the kiosk --------------------------------------------------------------------------------------
    def ticket(self, device: ApiClient, *, code: str, service: str) -> tuple[QueueTicket, Office | None]:
        """A queue number for the resident whose identity *code* this is, and the office it is for."""
        error: ConsentError | None = None
        with self._wiring.transaction() as db:
            subject, refusal = self._resident_of(db, code)
            if refusal is not None:
                self._log_refusal(db, device, action="ticket", reason=f"code {refusal}", subject=subject,
                                  purpose="queue number", what=[{"service": service}])
                error = CodeRefused(refusal)
            else:
                assert subject is not None
                try:
                    ticket = issue_ticket(db, device, subject, service)
                    office = db.get(Office, ticket.office_id)
                except ConsentError as exc:  # an unknown service, a device of no office, a busy queue
                    self._log_refusal(db, device, action="ticket", reason=exc.reason, subject=subject,
                                      purpose="queue number", what=[{"service": printable(service, 64)}])
                    error = exc
        if error is not None:
            raise error
        return ticket, office

    # -- the resident ---------------------------------------------------------------------------------
    def pending(self, resident: str, view: Callable[[Session, list[ConsentRequest]], T]) -> T:
        """*view* of the resident's pending requests, overdue ones expired (and logged) first."""
        with self._wiring.transaction() as db:
            return view(db, pending_for(db, resident))

    def answer(self, resident: str, request_id: str, approve: list[dict[str, Any]] | None,
               view: Callable[[Session, ConsentRequest], T], *, everything: bool = False) -> T:
        """Approve *approve* (a subset of what was asked), or with *everything* all that was asked, or refuse
        with None; *view* of the answered request, in the same transaction. An expiry found on the way is
        committed although the answer is refused."""
        error: ConsentError | None = None
        with self._wiring.transaction() as db:
            made = db.get(ConsentRequest, request_id) if plausible_id(request_id) else None
            if made is None or made.resident != resident:
                raise ConsentError("not_found", "no such request", 404)
            if everything:
                approve = [{"type": i["type"], "fields": list(i["fields"])} for i in made.items]
            try:
                answered = decide(db, resident, request_id, approve=approve,
                                  fetch_minutes=self._wiring.settings.consent_fetch_minutes)
            except ConsentError as exc:
                error = exc
            else:
                out = view(db, answered)
        if error is not None:
            raise error
        return out

    def history(self, resident: str, limit: int = 100, describe: Describe | None = None) -> list[dict[str, Any]]:
        """The resident's access-log entries in plain language, overdue requests expired (and logged) first."""
        with self._wiring.transaction() as db:
            return history(db, resident, limit=limit, describe=describe)
