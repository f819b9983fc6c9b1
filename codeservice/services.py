"""The service's parts, built once from the settings and shared by the web app and the CLI.

A view reaches them with :func:`current_services`, never through the app factory that registers it.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property

from flask import Flask, current_app
from sqlalchemy.orm import Session

from codeservice.accesslog.service import AUDIT_OFFICE, checkpoint_fell_due, checkpoint_if_due
from codeservice.cards.service import CARD_OFFICE, card_status_list
from codeservice.certificates.models import Department
from codeservice.certificates.service import record_org_codes, status_list_token
from codeservice.config import Settings
from codeservice.consent.service import ConsentService
from codeservice.db import Database, migrate
from codeservice.demo import ensure_demo_certificates, ensure_demo_office, ensure_demo_transit
from codeservice.federation.service import CityLists
from codeservice.identity.residents import ensure_demo_residents
from codeservice.state import StateReplayGuard, StateStore, make_state
from codeservice.transit.partitions import DAYS_AHEAD, ensure_partitions
from codeservice.transit.service import TRANSIT_PLATFORM, transit_status_list
from codeservice.venues.service import VENUE_ISSUER, venue_status_list
from issuers.codes import issue_code
from issuers.keyring import IssuerInfo, Keyring, KeyringError
from issuers.trustlist import KeyringKeys, sign_trust_list
from sdk import TrustList, Verifier
from sdk.citytime import service_day
from sdk.claims import subject_from_text
from sdk.keys import b64u_encode, load_public_pem
from verifiers.online import OnlineVerifier

IDENTITY_OFFICE = IssuerInfo("city-id", "City Identity Office", ("id",))
#: Signs the receipts of yes/no checks (核验); its public key is in the trust list like any other.
CHECKS_OFFICE = IssuerInfo("city-checks", "City Verification Service", ("receipt",))


#: Codes a gate record carries are checked against the scan's time with this much more than the clock
#: leeway: a gate may run with a wider leeway of its own.
EVIDENCE_SLACK = 300


@dataclass
class Services:
    settings: Settings
    _evidence: tuple[int, Verifier] | None = field(default=None, init=False, repr=False)

    @cached_property
    def db(self) -> Database:
        return Database(self.settings.database_url)

    @cached_property
    def keyring(self) -> Keyring:
        return Keyring(self.settings.keys_dir, signing_alg=self.settings.signing_alg,
                       issuer_algs=dict(self.settings.issuer_signing_algs), city=self.settings.city)

    @cached_property
    def state(self) -> StateStore:
        return make_state(self.settings.redis_url, self.settings.redis_prefix)

    @cached_property
    def consent(self) -> ConsentService:
        return ConsentService(self)

    @cached_property
    def federated(self) -> CityLists:
        """The federated cities' trust lists and status lists, as this service holds them (docs/federation.md)."""
        return CityLists(self.db, city=self.settings.city, validity=self.settings.trust_validity)

    @cached_property
    def online(self) -> OnlineVerifier:
        return OnlineVerifier(
            KeyringKeys(self.keyring, validity=self.settings.trust_validity),
            StateReplayGuard(self.state),
            leeway=self.settings.leeway,
            status_source=self.status_tokens,
            federation=self.federated.federation,
            refresh_federation=self.federated.refresh,
        )

    def status_changed(self) -> None:
        """A status changed (a card reported lost): this process's online verifier reads the lists again at its next
        verification, not after its refresh interval (other processes within it, ``OnlineVerifier``)."""
        if "online" in self.__dict__:  # built: else it reads them fresh when it is
            self.online.refresh_status()

    def evidence_verifier(self) -> Verifier:
        """Checks the codes gate records carry, with every key the service ever trusted (retired ones too, in
        their time): a bus reader may upload a week's records at once (``transit.check_evidence``)."""
        self.federated.refresh()
        version = self.keyring.version()
        if self._evidence is None or self._evidence[0] != version:
            now = int(time.time())
            forever = now + 100 * 365 * 86400
            keys = self.keyring.trusted_keys(now, forever, include_retired=True)
            trust = TrustList.from_keys(keys, issued_at=now, expires_at=forever, anchor="evidence")
            self._evidence = (version, Verifier(trust, leeway=self.settings.leeway + EVIDENCE_SLACK,
                                                federation=self.federated.federation))
        return self._evidence[1]

    def status_tokens(self, now: float | None = None) -> list[str]:
        """Every issuer's current status list token: each department's, the transit platform's, the card office's."""

        with self.db.session() as session:
            issuers = [d.id for d in session.query(Department).order_by(Department.id)]
            return [self.status_list(session, issuer, now)
                    for issuer in [*issuers, TRANSIT_PLATFORM.id, CARD_OFFICE.id, VENUE_ISSUER.id]]

    def status_list(self, session: Session, issuer: str, now: float | None = None) -> str:
        """The status list of a department (its certificates) or of the transit platform (ride devices)."""

        uri = f"{self.settings.public_url}/api/v1/status/{issuer}"
        if issuer == TRANSIT_PLATFORM.id:
            return transit_status_list(session, self.keyring, size=self.settings.status_list_size, uri=uri,
                                       ttl=self.settings.status_ttl, validity=self.settings.status_validity, now=now)
        if issuer == CARD_OFFICE.id:
            return card_status_list(session, self.keyring, size=self.settings.status_list_size, uri=uri,
                                    ttl=self.settings.status_ttl, validity=self.settings.status_validity, now=now)
        if issuer == VENUE_ISSUER.id:
            return venue_status_list(session, self.keyring, size=self.settings.status_list_size, uri=uri,
                                     ttl=self.settings.status_ttl, validity=self.settings.status_validity, now=now)
        return status_list_token(
            session, self.keyring, issuer, size=self.settings.status_list_size,
            uri=uri, ttl=self.settings.status_ttl, validity=self.settings.status_validity, now=now,
        )

    def initialise(self) -> dict[str, object]:
        """Create the data directory, schema, keys, secret and demo data where missing (idempotent)."""
        home = self.settings.home
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        secret = home / "secret_key"
        if not secret.exists():
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        migrate(self.db.engine)
        # gate records' and trips' partitions (PostgreSQL) from yesterday (late uploads) to the days ahead
        today = dt.date.fromisoformat(service_day(time.time()))
        ensure_partitions(self.db.engine, today - dt.timedelta(days=1), DAYS_AHEAD + 1)
        keys_created = self.keyring.initialise([IDENTITY_OFFICE, CHECKS_OFFICE, AUDIT_OFFICE, TRANSIT_PLATFORM,
                                                 CARD_OFFICE, VENUE_ISSUER])
        demo = []
        with self.db.session() as session:
            if self.settings.demo_data:
                residents = ensure_demo_residents(session)
                ensure_demo_certificates(session, self.keyring, residents, self.settings.status_list_size)
                ensure_demo_office(session)
                ensure_demo_transit(session, residents, fare_limit=self.settings.ride_fare_limit)
                demo = [r.pid for r in residents]
            record_org_codes(session, self.keyring)  # departments added before the trust list carried them
        return {"home": str(home), "keys_created": keys_created, "demo_residents": demo}

    def audit_key(self, kid_b64: str):  # type: ignore[no-untyped-def]
        """The public key of an audit signing key id (base64url), also of a retired one, or None."""

        for key in self.keyring.trusted_keys(time.time(), int(time.time()) + 1):
            if b64u_encode(key.kid) == kid_b64 and "audit" in key.kinds:
                return key.public_key
        for entry in self.keyring.list_keys():
            if entry["issuer"] == AUDIT_OFFICE.id and b64u_encode(bytes.fromhex(entry["kid"])) == kid_b64:

                return load_public_pem((self.keyring.path / f"{entry['kid']}.pub.pem").read_bytes())
        return None

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work, committed on success; after the commit, the access log's checkpoint when this
        work appended the entry it falls on (signed over the committed chain, in its own transaction)."""
        with self.db.session() as session:
            yield session
            due = checkpoint_fell_due(session)
        if due:
            with self.db.session() as session:
                self.checkpoint_if_due(session)

    def checkpoint_if_due(self, session: Session) -> None:
        """After writing to the access log: sign its checkpoint when one is due."""

        try:
            signer = self.keyring.signer(AUDIT_OFFICE.id)
        except KeyringError:
            return  # a data directory made before the audit key existed: 'citycode init' adds it
        checkpoint_if_due(session, signer)

    def secret_key(self) -> str:
        return (self.settings.home / "secret_key").read_text().strip()

    def issue_identity_code(self, pid: str, now: float | None = None) -> str:
        return issue_code(
            self.keyring.signer(IDENTITY_OFFICE.id),
            "id",
            subject=subject_from_text(pid),
            lifetime=self.settings.code_lifetime,
            now=now,
        )

    def trust_list_token(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        return sign_trust_list(self.keyring, validity=self.settings.trust_validity, now=now)


def current_services(app: Flask | None = None) -> Services:
    """The services of *app*, by default the app handling the current request."""
    return (app or current_app).extensions["citycode"]  # type: ignore[no-any-return]
