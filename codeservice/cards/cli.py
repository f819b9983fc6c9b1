"""``citycode card``: print a resident's card (实体卡), list their cards, report one lost."""

from __future__ import annotations

from pathlib import Path

import click

from codeservice.cards import service as cards
from codeservice.cards.service import CardError
from codeservice.cli.common import echo_json, fail, load_services
from issuers.cards import CardError as RenderError
from issuers.cards import render_card

#: Who the access log names for what the command line does.
ACTOR, ACTOR_LABEL = "cli", "service-hall operator (command line)"


@click.group()
def card() -> None:
    """Printed cards for residents without a smartphone: issue (and print), list, report lost."""


def _run(step):  # type: ignore[no-untyped-def]
    services = load_services()
    try:
        with services.transaction() as db:
            return services, step(services, db)
    except CardError as exc:
        fail(exc.message, exc.reason)


@card.command("issue")
@click.argument("resident")
@click.option("--name", help="the display name to print (default: the resident's display name)")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="where to write the printable card")
@click.option("--format", "fmt", type=click.Choice(["png", "pdf"]), default=None,
              help="png or pdf (default: from --out's extension, else png)")
def card_issue(resident: str, name: str | None, out: Path, fmt: str | None) -> None:
    """Issue RESIDENT's printed card and write it, ready to print, to --out."""
    fmt = fmt or ("pdf" if out.suffix.lower() == ".pdf" else "png")

    def step(services, db):  # type: ignore[no-untyped-def]
        made = cards.issue_card(db, services.keyring, resident=resident, name=name,
                                months=services.settings.card_months,
                                status_list_size=services.settings.status_list_size, actor=ACTOR,
                                actor_label=ACTOR_LABEL)
        return cards.card_json(made), render_card(made.code, made.printed_name, fmt)

    try:
        _, (made, image) = _run(step)
    except RenderError as exc:
        fail(str(exc), "invalid_name")
    try:
        out.write_bytes(image)
    except OSError as exc:
        fail(f"the card {made['id']} was issued but could not be written to {out}: {exc.strerror}; report it lost "
             "and issue another", "write_error")
    echo_json({**made, "file": str(out), "format": fmt})


@card.command("list")
@click.argument("resident")
def card_list(resident: str) -> None:
    """RESIDENT's printed cards, newest first."""
    _, out = _run(lambda _services, db: [cards.card_json(c) for c in cards.cards_of(db, resident)])
    echo_json(out)


@card.command("lost")
@click.argument("card_id")
def card_lost(card_id: str) -> None:
    """Report the card CARD_ID lost: revoked in the card status list from now on."""
    _, out = _run(lambda _services, db: cards.card_json(
        cards.report_lost(db, card_id, actor=ACTOR, actor_label=ACTOR_LABEL)))
    echo_json(out)


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (card,)
