"""Commands for issuer keys, the trust list, residents and their identity codes."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from codeservice.cli.common import echo_json, fail, load_services, registry
from codeservice.errors import NotFound
from codeservice.identity.residents import ResidentError, add_resident, get_resident, to_json
from issuers import render
from issuers.keyring import KeyringError
from sdk.citytime import city_today
from sdk.trustlist import TrustList, describe, load_anchor


# -- keys and trust ------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Issuer signing keys."""


@keys.command("list")
def keys_list() -> None:
    """List every key with its issuer and validity."""
    echo_json(load_services().keyring.list_keys())


@keys.command("rotate")
@click.option("--issuer", default="city-id", show_default=True)
def keys_rotate(issuer: str) -> None:
    """Start signing with a new key; the old one stays trusted until its codes have expired."""

    services = load_services()
    try:
        kid = services.keyring.rotate(issuer, grace=services.settings.grace_for(issuer))
    except KeyringError as exc:
        fail(str(exc))
    grace = services.settings.grace_for(issuer)
    echo_json({"issuer": issuer, "kid": kid.hex(), "previous_key_trusted_for_seconds": grace})


@click.group()
def trust() -> None:
    """The trust list gates load."""


@trust.command("export")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--anchor-out", type=click.Path(dir_okay=False, path_type=Path), help="also write the anchor public key")
def trust_export(output: Path, anchor_out: Path | None) -> None:
    """Write the signed trust list (a trustlist+jwt) to a file for gates."""
    services = load_services()
    token = services.trust_list_token()
    try:
        output.write_text(token + "\n")
        if anchor_out is not None:
            anchor_out.write_bytes(services.keyring.anchor_public_pem())
    except OSError as exc:
        fail(f"cannot write: {exc.strerror}")

    summary = describe(TrustList.load(token, load_anchor(services.keyring.anchor_public_pem())))
    echo_json({"written": str(output), "anchor_file": str(anchor_out) if anchor_out else None, **summary})


# -- residents and codes ---------------------------------------------------------------------
@click.group()
def resident() -> None:
    """Residents."""


@resident.command("add")
@click.option("--name")
@click.option("--birth-date", help="YYYY-MM-DD")
def resident_add(name: str | None, birth_date: str | None) -> None:
    """Add a resident and print it, with its new pseudonymous id."""

    born = None
    if birth_date is not None:
        try:
            born = dt.date.fromisoformat(birth_date)
        except ValueError:
            fail(f"--birth-date must be YYYY-MM-DD, got {birth_date!r}")
        if born > city_today():
            fail("--birth-date lies in the future")
    services = load_services()
    try:
        with services.db.session() as db:
            echo_json(to_json(add_resident(db, name, born)))
    except ResidentError as exc:
        fail(str(exc))


@click.group()
def code() -> None:
    """Identity codes."""


def _numbered(path: Path, i: int, count: int) -> Path:
    return path if count == 1 else path.with_name(f"{path.stem}-{i + 1}{path.suffix}")


@code.command("issue")
@click.argument("resident_id")
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 10000))
@click.option("--png", "png_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--svg", "svg_path", type=click.Path(dir_okay=False, path_type=Path))
def code_issue(resident_id: str, count: int, png_path: Path | None, svg_path: Path | None) -> None:
    """Sign identity codes for RESIDENT_ID and print their text, one per line.

    With --count above 1, image files are numbered: code-1.png, code-2.png, ...
    """

    services = load_services()
    with services.db.session() as db:
        found = get_resident(db, resident_id)
        if found is None:
            fail(f"no resident {resident_id!r}")
        if found.frozen:
            fail(f"resident {resident_id} is frozen")
    for i in range(count):
        text = services.issue_identity_code(resident_id)
        try:
            if png_path is not None:
                _numbered(png_path, i, count).write_bytes(render.png(text))
            if svg_path is not None:
                _numbered(svg_path, i, count).write_text(render.svg(text))
        except OSError as exc:
            fail(f"cannot write image: {exc.strerror}")
        click.echo(text)


# -- frozen identities ---------------------------------------------------------------------------
def _set_frozen(resident_id: str, frozen: bool) -> None:
    with registry() as (_, session):
        found = get_resident(session, resident_id.strip())
        if found is None:
            raise NotFound(f"no resident {resident_id!r}")
        found.frozen = frozen
        out = to_json(found)
    echo_json(out)


@resident.command("freeze")
@click.argument("resident_id")
def resident_freeze(resident_id: str) -> None:
    """Freeze an identity (lost phone): no new identity or certificate codes until unfrozen."""
    _set_frozen(resident_id, True)


@resident.command("unfreeze")
@click.argument("resident_id")
def resident_unfreeze(resident_id: str) -> None:
    """Lift a freeze."""
    _set_frozen(resident_id, False)


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (keys, trust, resident, code,)
