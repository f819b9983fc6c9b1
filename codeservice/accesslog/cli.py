"""``citycode audit``: verify the access log's chain and sign a checkpoint of its head."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from codeservice.accesslog.service import AUDIT_OFFICE, checkpoint_head, verify_chain
from codeservice.cli.common import EXIT_REFUSED, echo_json, fail, load_services
from codeservice.dashboard.counts import log_head, record_audit_run
from codeservice.services import Services
from issuers.keyring import KeyringError
from sdk.keys import b64u_encode


# -- the access log ------------------------------------------------------------------------------------
@contextmanager
def _log_session() -> Iterator[tuple[Services, Session]]:
    """An initialised home's services and one transaction; nothing is created or migrated here."""
    from sqlalchemy.exc import SQLAlchemyError

    services = load_services(initialise=False)
    if not (services.settings.home / "secret_key").exists():
        fail(f"{services.settings.home} is not initialised; run 'citycode init' first", "init_error")
    try:
        with services.db.session() as session:
            yield services, session
    except SQLAlchemyError as exc:
        fail(f"database error: {exc.__class__.__name__}: {str(exc).splitlines()[0]}", "database_error")


@click.group()
def audit() -> None:
    """The hash-chained access log: verify it, sign checkpoints."""


@audit.command("verify")
def audit_verify() -> None:
    """Walk the whole log; exit 0 when intact, 1 naming the first altered, missing or misplaced entry. The run's
    outcome is kept for the data office's dashboard (``audit_runs``)."""

    with _log_session() as (services, session):
        head = log_head(session)
        report = verify_chain(session, services.audit_key)
        record_audit_run(session, report, head)
    echo_json(report.to_dict())
    sys.exit(0 if report.ok else EXIT_REFUSED)


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign a checkpoint at the newest entry (for example at the end of each day)."""

    with _log_session() as (services, session):
        try:
            signer = services.keyring.signer(AUDIT_OFFICE.id)
        except KeyringError as exc:
            fail(f"no audit key: {exc}; run 'citycode init'", "keyring_error")
        mark = checkpoint_head(session, signer)
        out = {"seq": mark.seq, "hash": mark.hash, "issuer": signer.issuer, "kid": b64u_encode(signer.kid)} \
            if mark is not None else {"seq": None, "message": "the log is empty; nothing to vouch for"}
    echo_json(out)


#: The groups :mod:`codeservice.cli.main` adds to ``citycode``.
COMMANDS = (audit,)
