"""Who is signed in: the resident of the browser session, for pages and for the JSON the pages read."""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import redirect, session, url_for
from sqlalchemy.orm import Session

from codeservice.contract import check_request
from codeservice.identity.residents import frozen_or_none
from codeservice.jsonapi import BadRequest


def _signed_in() -> str | None:
    pid = session.get("resident")
    return pid if isinstance(pid, str) else None


def login_required(view):  # type: ignore[no-untyped-def]
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _signed_in():
            return redirect(url_for("web.signin"))
        return view(*args, **kwargs)

    return wrapper


def signed_in_resident(db: Session) -> str:
    """The session's resident: 401 without one (or a stale one), 403 if the identity is frozen; then the request is
    checked against the document (a JSON endpoint's; nothing for a page)."""
    pid = session.get("resident")
    if not isinstance(pid, str) or not pid:
        raise BadRequest("unauthorised", "sign in first", 401)
    frozen = frozen_or_none(db, pid)
    if frozen is None:
        session.clear()
        raise BadRequest("unauthorised", "sign in again", 401)
    if frozen:
        raise BadRequest("frozen", "this identity is frozen; contact the identity office", 403)
    check_request()  # the resident is known: now the request itself (codeservice/contract.py)
    return pid

