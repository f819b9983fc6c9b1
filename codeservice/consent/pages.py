"""What the clerk's and the resident's consent pages share: times, answers, CSRF checks, form fields."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from typing import Any

from flask import Response, abort, jsonify, request, session
from flask_babel import get_locale, lazy_gettext, ngettext
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WResponse

from codeservice.certificates.models import CertType
from codeservice.certificates.service import disclosable
from codeservice.clients.models import ApiClient

MAX_FIELDS = 64
CSRF_HEADER = "X-CSRF-Token"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite returns naive datetimes


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else aware(value).isoformat()


def no_store(response: Response) -> WResponse:
    response.headers["Cache-Control"] = "no-store"
    return response


def html_page(html: str, status: int = 200) -> WResponse:
    return no_store(Response(html, status=status, mimetype="text/html"))


def json_error(status: int, error: str, message: str) -> WResponse:
    response = jsonify(error=error, message=message)
    response.status_code = status
    return no_store(response)


def check_csrf_form() -> None:
    sent = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    if not sent or not isinstance(expected, str) or not secrets.compare_digest(sent, expected):
        abort(400, "the form expired; reload the page and try again")


def csrf_header_ok() -> bool:
    sent = request.headers.get(CSRF_HEADER, "")
    expected = session.get("csrf", "")
    return bool(sent) and isinstance(expected, str) and bool(expected) and secrets.compare_digest(sent, expected)


def start_session(key: str, value: Any) -> None:
    """A fresh session for one role: a clerk's sign-in ends a resident's session in this browser and back."""
    session.clear()
    session[key] = value
    session["csrf"] = secrets.token_urlsafe(24)


def fields_from_form(values: Iterable[str]) -> dict[str, list[str]]:
    """``TYPE:name`` values of ticked boxes, grouped by certificate type in the order given."""
    chosen: dict[str, list[str]] = {}
    for value in list(values)[:MAX_FIELDS]:
        code, sep, name = value.partition(":")
        if sep and code and name and name not in chosen.setdefault(code, []):
            chosen[code].append(name)
    return {code: names for code, names in chosen.items() if names}


def labels_of(cert_type: CertType | None) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in disclosable(cert_type)} if cert_type is not None else {}


def in_sentence(name: str, *, label: bool = False) -> str:
    """A certificate type's name (or a field's *label*) inside an English sentence as the service has always
    written it ("your elderly preferential card (name)"); in other languages the name as the department gave it."""
    if str(get_locale()) != "en":
        return name
    return name[:1].lower() + name[1:] if label else name.split(" (")[0].lower()


def keep_text(minutes: int) -> str:
    """How long a clerk keeps the data, in the reader's language: 30 minutes, 4 hours, 1 day."""
    if minutes % 1440 == 0:
        return ngettext("%(num)d day", "%(num)d days", minutes // 1440)
    if minutes % 60 == 0:
        return ngettext("%(num)d hour", "%(num)d hours", minutes // 60)
    return ngettext("%(num)d minute", "%(num)d minutes", minutes)


#: What a page says for a refusal of the consent rules (``ConsentError.reason``), in the reader's language.
#: The JSON API keeps the English ``message``; a reason not listed here shows that message.
CONSENT_MESSAGES = {
    "no_code": lazy_gettext("Scan the resident’s code first."),
    "no_fields": lazy_gettext("Tick at least one field to ask for."),
    "no_keep": lazy_gettext("Choose how long you will keep the data."),
    "purpose_not_allowed": lazy_gettext("This office may not state that purpose; choose one from the list."),
    "type_not_allowed": lazy_gettext("This office may not ask for that kind of certificate."),
    "not_needed_for_purpose": lazy_gettext(
        "That purpose does not need all you ticked; ask only for what the purpose offers."),
    "rate_limited": lazy_gettext("Too many requests in a minute; wait a moment and try again."),
    "unavailable": lazy_gettext("The service cannot check the request allowance now; try again."),
    "nothing_chosen": lazy_gettext("Tick at least one item to share, or press Refuse."),
    "no_decision": lazy_gettext("Choose Approve selected or Refuse."),
    "not_pending": lazy_gettext("That request is no longer waiting for an answer (it was answered or has expired)."),
    "not_held": lazy_gettext("You hold no valid certificate of that kind, so it cannot be shared."),
    "not_found": lazy_gettext("There is no such request."),
    "forbidden": lazy_gettext("This clerk belongs to no office."),
    "identity_frozen": lazy_gettext(
        "This identity is frozen or unknown; the resident should contact the identity office."),
}


def consent_message(reason: str, fallback: str) -> str:
    text = CONSENT_MESSAGES.get(reason)
    return str(text) if text is not None else fallback


def signed_in_clerk(db: Session) -> ApiClient | None:
    """The clerk signed in on the console (``session['clerk']``), if still an active clerk of an office: the
    console's pages and the card window's ask it the same way."""
    clerk_id = session.get("clerk")
    if type(clerk_id) is not int:
        return None
    client = db.get(ApiClient, clerk_id)
    if client is None or not client.active or client.role != "clerk" or not client.office_id:
        return None
    return client
