"""What the clerk's and the resident's consent pages share: times, answers, CSRF checks, form fields."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from typing import Any

from flask import Response, abort, jsonify, request, session
from werkzeug.wrappers import Response as WResponse

from codeservice.certificates.models import CertType
from codeservice.certificates.service import disclosable

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


def keep_text(minutes: int) -> str:
    if minutes % 1440 == 0:
        days = minutes // 1440
        return f"{days} day" + ("s" if days != 1 else "")
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour" + ("s" if hours != 1 else "")
    return f"{minutes} minute" + ("s" if minutes != 1 else "")

