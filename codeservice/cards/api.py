"""Printed cards over HTTP: a clerk at a service window issues a resident's card and takes a loss report; the
resident lists their cards and reports one lost (docs/without-a-smartphone.md).

Clerk (``clerk`` key, rate-limited like every clerk call):

* ``POST /cards`` ``{resident, name?, format?}`` -> 201 the card and ``image``, the printable card (PNG or PDF)
  as a data URL, drawn once, now: the service keeps the code to verify it, not to print it again.
* ``POST /cards/<id>/lost`` -> 200 the card, revoked from now on.

Resident (session cookie): ``GET /me/cards`` -> ``{cards: [...]}``; ``POST /me/cards/<id>/lost`` -> 200 the card.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request

from codeservice.cards import service as cards
from codeservice.cards.service import CardError
from codeservice.clients.auth import require_client
from codeservice.clients.models import ApiClient
from codeservice.consent.models import Office
from codeservice.consent.service import ConsentError, actor_of
from codeservice.contract import check_request
from codeservice.identity.session import signed_in_resident
from codeservice.jsonapi import json_object, no_store
from codeservice.services import current_services
from codeservice.state import StateError
from issuers.cards import render_card

cards_api = Blueprint("cards_api", __name__, url_prefix="/api/v1")
F = TypeVar("F", bound=Callable[..., Any])
MIME = {"png": "image/png", "pdf": "application/pdf"}


@cards_api.errorhandler(CardError)
def _card_error(exc: CardError) -> tuple[Response, int]:
    return jsonify(error=exc.reason, message=exc.message), exc.status


@cards_api.errorhandler(ConsentError)
def _rate_error(exc: ConsentError) -> tuple[Response, int]:  # the clerk's allowance a minute (rate_limited)
    return jsonify(error=exc.reason, message=exc.message), exc.status


@cards_api.errorhandler(StateError)
def _state_error(exc: StateError) -> tuple[Response, int]:
    return jsonify(error="state_unavailable", message=str(exc)), 503


def _clerk(view: F) -> F:
    """A clerk's key, then the clerk's allowance a minute, then the document's check of the request."""

    @wraps(view)
    def limited(*args: Any, **kwargs: Any) -> Any:
        current_services().consent.check_rate(g.client, method=request.method, path=request.path)
        check_request()
        return view(*args, **kwargs)

    return require_client("clerk", check=False)(limited)  # type: ignore[return-value]


def clerk_actor(db: Any, clerk: ApiClient) -> tuple[str, str, str | None]:
    """The access log's actor, its label and the office of *clerk*."""
    office = db.get(Office, clerk.office_id) if clerk.office_id else None
    actor, label = actor_of(clerk, office)
    return actor, label, clerk.office_id


def data_url(content: bytes, fmt: str) -> str:
    return f"data:{MIME[fmt]};base64," + base64.b64encode(content).decode("ascii")


@cards_api.post("/cards")
@_clerk
def issue() -> tuple[Response, int]:
    body = json_object()  # CardIssue
    fmt = body.get("format", "png")
    services = current_services()
    with services.transaction() as db:
        actor, label, office = clerk_actor(db, g.client)
        card = cards.issue_card(db, services.keyring, resident=body["resident"], name=body.get("name"),
                                months=services.settings.card_months,
                                status_list_size=services.settings.status_list_size,
                                actor=actor, actor_label=label, office=office)
        out = cards.card_json(card)
        image = render_card(card.code, card.printed_name, fmt)
    out["image"] = data_url(image, fmt)
    return no_store(jsonify(out)), 201


@cards_api.post("/cards/<card_id>/lost")
@_clerk
def clerk_lost(card_id: str) -> Response:
    services = current_services()
    with services.transaction() as db:
        actor, label, office = clerk_actor(db, g.client)
        out = cards.card_json(cards.report_lost(db, card_id, actor=actor, actor_label=label, office=office))
    services.status_changed()
    return no_store(jsonify(out))


def _resident() -> str:
    with current_services().db.session() as db:
        return signed_in_resident(db)


@cards_api.get("/me/cards")
def my_cards() -> Response:
    pid = _resident()
    with current_services().db.session() as db:
        out = [cards.card_json(c) for c in cards.cards_of(db, pid)]
    return no_store(jsonify(cards=out))


@cards_api.post("/me/cards/<card_id>/lost")
def my_card_lost(card_id: str) -> Response:
    pid = _resident()
    services = current_services()
    with services.transaction() as db:
        card = cards.report_lost(db, card_id, actor=f"resident:{pid}", actor_label="you", resident=pid)
        out = cards.card_json(card)
    services.status_changed()
    return no_store(jsonify(out))

