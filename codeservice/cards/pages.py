"""Pages of printed cards: the resident's cards (``/cards``, report one lost) and the clerk's (``/console/cards``:
print a resident's card, take a loss report at the window)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as WResponse

from codeservice.cards import service as cards
from codeservice.cards.api import clerk_actor, data_url
from codeservice.cards.service import CardError
from codeservice.clients.models import ApiClient
from codeservice.consent.models import Office
from codeservice.consent.pages import check_csrf_form, html_page, signed_in_clerk
from codeservice.identity.session import login_required
from codeservice.services import current_services
from issuers.cards import render_card

card_pages = Blueprint("cards", __name__)

#: What a page says for a refused step (``CardError.reason``), in the reader's language.
CARD_MESSAGES = {
    "not_found": lazy_gettext("There is no such resident or card."),
    "identity_frozen": lazy_gettext("This identity is frozen; the identity office must unfreeze it first."),
    "card_exists": lazy_gettext("This resident already holds a valid card. Report it lost before printing another."),
    "invalid_name": lazy_gettext("The name cannot be printed: 1 to 40 letters, without control characters."),
    "status_list_full": lazy_gettext("No card can be printed now; tell the service desk."),
    "invalid_body": lazy_gettext("Something in the form was wrong; try again."),
}
STATES = {"valid": lazy_gettext("valid"), "lost": lazy_gettext("reported lost"), "expired": lazy_gettext("expired")}


def _message(exc: CardError) -> str:
    text = CARD_MESSAGES.get(exc.reason)
    return str(text) if text is not None else exc.message


def _view(card: Any) -> dict[str, Any]:
    out = cards.card_json(card)
    out["state_text"] = str(STATES[out["status"]])
    return out


# -- the resident -----------------------------------------------------------------------------------------------
def _pid() -> str:
    pid = session.get("resident")
    assert isinstance(pid, str)  # login_required
    return pid


def _resident_page(pid: str, *, notice: str | None = None, error: str | None = None, status: int = 200) -> WResponse:
    with current_services().db.session() as db:
        listed = [_view(c) for c in cards.cards_of(db, pid)]
    return html_page(render_template("cards.html", cards=listed, notice=notice, error=error), status)


@card_pages.get("/cards")
@login_required
def cards_page() -> WResponse:
    notice = _("The card is reported lost. No gate or window accepts it any more.") if request.args.get("lost") \
        else None
    return _resident_page(_pid(), notice=notice)


@card_pages.post("/cards/<card_id>/lost")
@login_required
def report_lost(card_id: str) -> WResponse:
    check_csrf_form()
    pid = _pid()
    services = current_services()
    try:
        with services.transaction() as db:
            cards.report_lost(db, card_id[:64], actor=f"resident:{pid}", actor_label="you", resident=pid)
    except CardError as exc:
        return _resident_page(pid, error=_message(exc), status=exc.status)
    services.status_changed()
    return redirect(url_for("cards.cards_page", lost=1), 303)


# -- the clerk ----------------------------------------------------------------------------------------------------
def _console(db: Session, clerk: ApiClient, **shown: Any) -> str:
    office = db.get(Office, clerk.office_id)
    return render_template("console_cards.html", clerk=clerk.name, office=office.name if office else "", **shown)


@card_pages.get("/console/cards")
def console_cards() -> WResponse:
    with current_services().db.session() as db:
        clerk = signed_in_clerk(db)
        if clerk is None:
            return redirect(url_for("console.signin"))
        return html_page(_console(db, clerk))


@card_pages.post("/console/cards")
def console_issue() -> WResponse:
    check_csrf_form()
    services = current_services()
    resident = request.form.get("resident", "").strip()[:64]
    name = request.form.get("name", "").strip()[:200] or None
    fmt = "pdf" if request.form.get("format") == "pdf" else "png"
    checked = request.form.get("id_checked") == "yes"
    with services.db.session() as db:
        clerk = signed_in_clerk(db)
        if clerk is None:
            return redirect(url_for("console.signin"))
        if not checked:  # the clerk prints a card only for the person whose identity card lies on the desk
            return html_page(_console(db, clerk, error=_("Check the resident’s identity card first, then tick the "
                                                          "box."), form={"resident": resident, "name": name or ""}),
                             400)
    try:
        with services.transaction() as db:
            clerk = signed_in_clerk(db)
            assert clerk is not None
            actor, label, office = clerk_actor(db, clerk)
            card = cards.issue_card(db, services.keyring, resident=resident, name=name,
                                    months=services.settings.card_months,
                                    status_list_size=services.settings.status_list_size,
                                    actor=actor, actor_label=label, office=office)
            issued = _view(card)
            image = render_card(card.code, card.printed_name, fmt)
    except CardError as exc:
        with services.db.session() as db:
            clerk = signed_in_clerk(db)
            assert clerk is not None
            return html_page(_console(db, clerk, error=_message(exc), form={"resident": resident, "name": name or ""}),
                             exc.status)
    with services.db.session() as db:
        clerk = signed_in_clerk(db)
        assert clerk is not None
        return html_page(_console(db, clerk, issued=issued, image=data_url(image, fmt), fmt=fmt))


@card_pages.post("/console/cards/lost")
def console_lost() -> WResponse:
    check_csrf_form()
    services = current_services()
    card_id = request.form.get("card", "").strip().lower()[:64]
    try:
        with services.transaction() as db:
            clerk = signed_in_clerk(db)
            if clerk is None:
                return redirect(url_for("console.signin"))
            actor, label, office = clerk_actor(db, clerk)
            lost = _view(cards.report_lost(db, card_id, actor=actor, actor_label=label, office=office))
    except CardError as exc:
        with services.db.session() as db:
            clerk = signed_in_clerk(db)
            assert clerk is not None
            return html_page(_console(db, clerk, lost_error=_message(exc)), exc.status)
    services.status_changed()
    with services.db.session() as db:
        clerk = signed_in_clerk(db)
        assert clerk is not None
        return html_page(_console(db, clerk, lost=lost))
