"""Federation's rules: the cities this city trusts, ending a federation, and the signed statement.

Plain functions over a SQLAlchemy session, no Flask. The statement's format and its verification are the
SDK's (sdk/federation.py); this module only lists the rows and signs them with the city's trust anchor.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from codeservice.errors import NotFound, Refused
from codeservice.federation.models import FederatedCity
from issuers.keyring import Keyring
from sdk import federation as fed
from sdk.federation import Federation, FederationStatement
from sdk.keys import PublicKey, b64u_encode, key_id, public_key_from_jwk, public_key_to_jwk
from sdk.sync import Fetch, SyncReport, http_get, sync_cities
from sdk.trustlist import TrustListError, load_anchor

log = logging.getLogger("citycode.federation")

_SCENE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
MAX_URL = 500


def parse_anchor(pem: bytes) -> PublicKey:
    """A city's anchor public key from PEM, of a kind a trust anchor is (``sdk.trustlist.load_anchor``: the same
    check a gate makes of its own anchor); Refused for anything else."""
    try:
        return load_anchor(pem)
    except TrustListError as exc:
        raise Refused(f"the anchor is not a trust anchor's public key: {exc}") from None


def add_city(
    session: Session, *, city: str, name: str, url: str, anchor: PublicKey, kinds: Iterable[str],
    scenes: Iterable[str] = (), valid_from: int | None = None, valid_until: int, own_city: str,
    anchor_kid: str | None = None, now: float | None = None,
) -> FederatedCity:
    """Trust *city* (or change its terms, which starts a federation ended before afresh)."""
    now_i = int(time.time() if now is None else now)
    kinds, scenes = sorted(set(kinds)), sorted(set(scenes))
    if not fed.CITY_ID.match(city):
        raise Refused(f"city id {city!r}: 1 to 64 of a-z, 0-9 and - (not at either end)")
    if city == own_city:
        raise Refused(f"{city} is this city itself")
    if not url.startswith(("https://", "http://")) or len(url) > MAX_URL or any(c.isspace() for c in url):
        raise Refused(f"url must be an http(s) URL of at most {MAX_URL} characters")
    unknown = set(kinds) - fed.FEDERATED_KINDS
    if unknown:
        raise Refused(f"kinds {sorted(unknown)} cannot be federated (only {sorted(fed.FEDERATED_KINDS)})")
    bad = [s for s in scenes if not _SCENE.match(s)]
    if bad:
        raise Refused(f"scene names {bad}: 1 to 64 of A-Z, a-z, 0-9, _ . -")
    start = now_i if valid_from is None else valid_from
    if valid_until <= start:
        raise Refused("valid-until must be after valid-from")
    kid = b64u_encode(key_id(anchor))
    if anchor_kid is not None and anchor_kid != kid:
        raise Refused(f"the anchor's key id is {kid}, not {anchor_kid}: compare it with the other city again")
    row = session.get(FederatedCity, city)
    if row is None:
        row = FederatedCity(city=city)
        session.add(row)
    row.name, row.url, row.anchor_jwk, row.anchor_kid = name, url.rstrip("/"), public_key_to_jwk(anchor), kid
    row.kinds, row.scenes, row.valid_from, row.valid_until, row.ended_at = kinds, scenes, start, valid_until, None
    session.flush()
    return row


def end_city(session: Session, city: str, now: float | None = None) -> FederatedCity:
    """End the federation with *city* now: its codes are refused (``city_not_accepted``) once gates refresh."""
    row = session.get(FederatedCity, city)
    if row is None:
        raise NotFound(f"no federated city {city!r}")
    now_i = int(time.time() if now is None else now)
    if row.ended_at is None:
        row.ended_at = now_i
        row.valid_until = min(row.valid_until, now_i)
    session.flush()
    return row


def list_cities(session: Session) -> list[FederatedCity]:
    return list(session.scalars(select(FederatedCity).order_by(FederatedCity.city)))


def to_sdk(row: FederatedCity) -> fed.FederatedCity:
    anchor = public_key_from_jwk(row.anchor_jwk)
    return fed.FederatedCity(
        city=row.city, name=row.name, url=row.url, anchor=anchor, anchor_kid=key_id(anchor),
        kinds=frozenset(row.kinds), scenes=frozenset(row.scenes), valid_from=row.valid_from,
        valid_until=row.valid_until)


def city_json(row: FederatedCity, now: float | None = None) -> dict[str, Any]:
    at = time.time() if now is None else now
    return {"city": row.city, "name": row.name, "url": row.url, "anchor_kid": row.anchor_kid,
            "kinds": list(row.kinds), "scenes": list(row.scenes), "valid_from": row.valid_from,
            "valid_until": row.valid_until, "ended_at": row.ended_at,
            "active": row.valid_from <= at < row.valid_until}


def statement_token(session: Session, keyring: Keyring, *, city: str, validity: int, now: float | None = None) -> str:
    """This city's federation statement, signed by its trust anchor."""
    now = time.time() if now is None else now
    claims = fed.statement_claims(city, [to_sdk(r) for r in list_cities(session)], now=now, validity=validity)
    return fed.sign_statement(claims, keyring.anchor_private())


class CityLists:
    """The service's own hold of its federation: the statement as its table says now, and each federated city's
    trust list and status lists fetched from that city (``sdk.sync.sync_cities``, verified with the anchor the
    table holds). The evidence verifier that checks uploaded gate records, and online verification, use it.

    :meth:`refresh` reads the table again at most every *every* seconds (``force`` at once) and fetches a city's
    lists only when they are due; a failed fetch keeps what was held, as a gate does."""

    def __init__(self, db: Any, *, city: str, validity: int, fetch: Fetch | None = None, every: float = 5.0,
                 backoff: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self.db, self.city, self.validity, self.every, self.clock = db, city, validity, every, clock
        self.fetch: Fetch = fetch if fetch is not None else (lambda url: http_get(url, timeout=3))
        self.backoff = backoff
        self.federation = Federation()
        self._after = 0.0
        self._failed: dict[str, float] = {}  # a city's base URL: no new attempt before then
        self._lock = threading.Lock()

    def _fetch(self, url: str) -> bytes:
        """*fetch*, but a city whose service failed is not asked again for *backoff* seconds: a request that
        refreshes the lists never waits on a city that is down more than once a minute."""
        base = url.split("/api/v1/", 1)[0]
        now = self.clock()
        if self._failed.get(base, 0.0) > now:
            raise OSError(f"{base} failed less than {self.backoff:.0f} s ago; not asked again yet")
        try:
            return self.fetch(url)
        except Exception:
            self._failed[base] = now + self.backoff
            raise

    def refresh(self, *, force: bool = False) -> SyncReport | None:
        now = self.clock()
        if not force and now < self._after:
            return None
        with self._lock:
            if not force and now < self._after:
                return None
            self._after = now + self.every
            with self.db.session() as session:
                cities = {row.city: to_sdk(row) for row in list_cities(session)}
            issued = int(now)
            self.federation.replace_statement(FederationStatement(
                city=self.city, issued_at=issued, expires_at=issued + self.validity, seq=issued, cities=cities))
            report = SyncReport()
            if force:
                self._failed.clear()
            sync_cities(self.federation, self._fetch, now, force, report)
            for error in report.errors:
                log.warning("federation: %s", error)
            return report
