"""The federation statement: which other cities a city trusts, signed by its trust anchor.

Wire form: a compact JWS (RFC 7515), like the trust list (sdk/trustlist.py), with header
``typ: federation+jwt``, ``alg`` the algorithm of the city's anchor key (the key decides, as everywhere:
``sdk.keys.alg_for_key``) and ``kid`` the base64url of the anchor's 8-byte key id. It is signed by the
city's own anchor, the key its gates already hold pinned. Claims:

``iss`` the publishing city's id, ``iat``/``exp`` the statement's validity, ``seq`` a counter that only
grows, and ``cities``: a list of entries ``{city, name, url, anchor_kid, anchor, kinds, scenes,
valid_from, valid_until}``:

- ``city`` the federated city's id (``[a-z0-9-]{1,64}``), ``name`` its name, ``url`` the base URL of its
  service (where its trust list and status lists are fetched: ``<url>/api/v1/trust-list`` and
  ``<url>/api/v1/status/<issuer>``);
- ``anchor`` the JWK of that city's trust-anchor public key, ``anchor_kid`` its key id (base64url), which
  must equal the id derived from the key: the city's trust list is accepted only when it verifies with it;
- ``kinds`` the kinds of code accepted from that city's residents (``id``, ``cert``, ``ride``; may be empty:
  the city is known, so that its codes are refused as ``city_not_accepted`` rather than ``unknown_key``);
- ``scenes`` the scenes where they are accepted (empty: every scene);
- ``valid_from``/``valid_until`` the federation's own dates (seconds since the epoch): outside them the
  city's codes are refused with ``city_not_accepted``. Ending a federation sets ``valid_until`` to the end.

A gate keeps the verified statement and, per federated city, that city's trust list and status lists in a
:class:`Federation` (filled by :class:`sdk.sync.GateSync`); :class:`sdk.verifier.Verifier` looks up a key id
that is not in its own trust list there.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from sdk.claims import CITY_ID
from sdk.cose import ALG_NAMES
from sdk.keys import (
    PublicKey,
    TrustedKey,
    alg_for_key,
    b64u_decode,
    b64u_encode,
    key_id,
    public_key_from_jwk,
    public_key_to_jwk,
)
from sdk.statuslist import StatusCache
from sdk.trustlist import MAX_TRUST_LIST_BYTES, TrustList, TrustListError

FEDERATION_TYPE = "federation+jwt"
#: The kinds of code a city may accept from another city's residents.
FEDERATED_KINDS = frozenset({"id", "cert", "ride"})
_SCENE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
MAX_CITIES = 1000
#: How far in the future a statement's ``iat`` may lie (the publisher's clock ahead of the gate's), as for status
#: lists: a gate whose clock is a little behind still takes a statement signed a moment ago.
MAX_CLOCK_AHEAD = 300

#: Why a statement is refused; each a stable code (docs/federation.md).
MALFORMED, BAD_SIGNATURE, WRONG_ANCHOR, EXPIRED, NOT_YET_VALID, KIND_NOT_ALLOWED = (
    "malformed", "bad_signature", "wrong_anchor", "expired", "not_yet_valid", "kind_not_allowed")


class FederationError(ValueError):
    """A statement (or a federated city's list) that must not be used; ``reason`` says why, stably."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def anchor_alg(anchor: PublicKey) -> str:
    """The JWS ``alg`` an anchor key signs with: the key decides."""
    return ALG_NAMES[alg_for_key(anchor)]


@dataclass(frozen=True)
class FederatedCity:
    """One city the statement's publisher trusts, and on which terms."""

    city: str
    name: str
    url: str
    anchor: PublicKey
    anchor_kid: bytes
    kinds: frozenset[str]
    scenes: frozenset[str]
    valid_from: int
    valid_until: int

    def active(self, at: float) -> bool:
        """Within the federation's dates."""
        return self.valid_from <= at < self.valid_until

    def refusal(self, kind: str, scene: str | None, at: float) -> str | None:
        """Why a genuine *kind* code of this city is not accepted in *scene* at *at*; None when it is.

        A check without a scene (None) is held to the kinds and dates only."""
        if at >= self.valid_until:
            return f"federation with {self.city} ended at {self.valid_until}"
        if at < self.valid_from:
            return f"federation with {self.city} starts at {self.valid_from}"
        if kind not in self.kinds:
            return f"{kind} codes of {self.city} are not accepted here"
        if scene is not None and self.scenes and scene not in self.scenes:
            return f"codes of {self.city} are not accepted in scene {scene}"
        return None

    def to_entry(self) -> dict[str, Any]:
        return {
            "city": self.city, "name": self.name, "url": self.url, "anchor_kid": b64u_encode(self.anchor_kid),
            "anchor": public_key_to_jwk(self.anchor), "kinds": sorted(self.kinds), "scenes": sorted(self.scenes),
            "valid_from": self.valid_from, "valid_until": self.valid_until,
        }


@dataclass(frozen=True)
class FederationStatement:
    """A verified statement of one city, indexed by federated city id."""

    city: str
    issued_at: int
    expires_at: int
    seq: int
    cities: Mapping[str, FederatedCity]

    def expired(self, at: float) -> bool:
        return at >= self.expires_at

    @classmethod
    def load(
        cls, token: str | bytes, anchor: PublicKey, *, at: float | None = None, leeway: int = 0,
        city: str | None = None,
    ) -> FederationStatement:
        """Verify *token* with the city's pinned *anchor* key; raise :class:`FederationError` with its reason.

        *city*, when given, is the id the statement must be issued by (a gate knows its own city)."""
        now = time.time() if at is None else at
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise FederationError(MALFORMED, "federation statement is not ASCII text") from None
        token = token.strip()
        if len(token) > MAX_TRUST_LIST_BYTES:
            raise FederationError(MALFORMED, "federation statement is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise FederationError(MALFORMED, f"federation statement is not a JWS: {exc}") from None
        if header.get("typ") != FEDERATION_TYPE:
            raise FederationError(MALFORMED, f"type {header.get('typ')!r}, expected {FEDERATION_TYPE!r}")
        if set(header) - {"typ", "alg", "kid"}:
            raise FederationError(MALFORMED, "header carries unexpected parameters")
        try:
            kid = b64u_decode(header.get("kid", ""))
        except ValueError:
            kid = b""
        if kid != key_id(anchor):
            raise FederationError(WRONG_ANCHOR, "statement is not signed by this city's trust anchor "
                                  f"(kid {header.get('kid')!r}, anchor {b64u_encode(key_id(anchor))})")
        try:
            claims = jwt.decode(token, key=anchor, algorithms=[anchor_alg(anchor)],  # type: ignore[arg-type]
                                options={"require": ["iat", "exp", "iss"], "verify_exp": False, "verify_iat": False})
        except jwt.InvalidSignatureError:
            raise FederationError(BAD_SIGNATURE, "statement signature does not verify with the trust anchor") from None
        except jwt.PyJWTError as exc:
            raise FederationError(MALFORMED, f"statement rejected: {exc}") from None
        iat, exp, seq, iss = claims["iat"], claims["exp"], claims.get("seq", 0), claims["iss"]
        if type(iat) is not int or type(exp) is not int or type(seq) is not int or not isinstance(iss, str):
            raise FederationError(MALFORMED, "iat, exp and seq must be integers, iss text")
        if city is not None and iss != city:
            raise FederationError(WRONG_ANCHOR, f"statement issued by {iss!r}, not by {city!r}")
        if now >= exp + leeway:
            raise FederationError(EXPIRED, f"statement expired at {exp}; fetch a fresh one")
        if iat > now + max(leeway, MAX_CLOCK_AHEAD):
            raise FederationError(NOT_YET_VALID, "statement issued in the future; check the clock")
        entries = claims.get("cities")
        if not isinstance(entries, list) or len(entries) > MAX_CITIES:
            raise FederationError(MALFORMED, f"statement has no city array (at most {MAX_CITIES})")
        cities: dict[str, FederatedCity] = {}
        for i, entry in enumerate(entries):
            parsed = parse_entry(entry, i)
            if parsed.city in cities or parsed.city == iss:
                raise FederationError(MALFORMED, f"city {parsed.city} listed twice or is the issuer itself")
            cities[parsed.city] = parsed
        return cls(city=iss, issued_at=iat, expires_at=exp, seq=seq, cities=cities)


def parse_entry(entry: Any, index: int) -> FederatedCity:
    where = f"statement city #{index}"
    if not isinstance(entry, dict):
        raise FederationError(MALFORMED, f"{where} is not an object")
    try:
        city, name, url = entry["city"], entry.get("name", ""), entry["url"]
        anchor_kid = b64u_decode(entry["anchor_kid"])
        anchor = public_key_from_jwk(entry["anchor"])
        kinds, scenes = entry["kinds"], entry.get("scenes", [])
        valid_from, valid_until = entry["valid_from"], entry["valid_until"]
    except (KeyError, ValueError, TypeError) as exc:
        raise FederationError(MALFORMED, f"{where} is malformed: {exc}") from None
    if not isinstance(city, str) or not CITY_ID.match(city):
        raise FederationError(MALFORMED, f"{where}: city id must be 1 to 64 of a-z, 0-9 and -")
    if not isinstance(name, str) or not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise FederationError(MALFORMED, f"{where}: name must be text, url an http(s) URL")
    if type(valid_from) is not int or type(valid_until) is not int:
        raise FederationError(MALFORMED, f"{where}: valid_from and valid_until must be integers")
    for what, names in (("kinds", kinds), ("scenes", scenes)):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FederationError(MALFORMED, f"{where}: {what} must be a list of names")
    unknown = set(kinds) - FEDERATED_KINDS
    if unknown:
        raise FederationError(KIND_NOT_ALLOWED, f"{where}: kinds {sorted(unknown)} cannot be federated "
                              f"(only {sorted(FEDERATED_KINDS)})")
    if not all(_SCENE.match(s) for s in scenes):
        raise FederationError(MALFORMED, f"{where}: a scene name is 1 to 64 of A-Z, a-z, 0-9, _ . -")
    if anchor_kid != key_id(anchor):
        raise FederationError(MALFORMED, f"{where}: anchor_kid does not match its key")
    return FederatedCity(city=city, name=name, url=url.rstrip("/"), anchor=anchor, anchor_kid=anchor_kid,
                         kinds=frozenset(kinds), scenes=frozenset(scenes), valid_from=valid_from,
                         valid_until=valid_until)


def statement_claims(city: str, cities: Iterable[FederatedCity], *, now: float, validity: int) -> dict[str, Any]:
    """The claims of a statement of *city* listing *cities*, valid *validity* seconds from *now*."""
    issued = int(now)
    return {"iss": city, "iat": issued, "exp": issued + validity, "seq": issued,
            "cities": [c.to_entry() for c in sorted(cities, key=lambda c: c.city)]}


def sign_statement(claims: Mapping[str, Any], anchor_private: Any) -> str:
    """The compact JWS of *claims*, signed by the anchor's private key (its algorithm by its key)."""
    public = anchor_private.public_key()
    return jwt.encode(dict(claims), anchor_private, algorithm=anchor_alg(public),
                      headers={"typ": FEDERATION_TYPE, "kid": b64u_encode(key_id(public))})


@dataclass(frozen=True)
class Located:
    """Where a key id not in the gate's own trust list was found: a federated city, its list, the key."""

    city: FederatedCity
    trust: TrustList
    key: TrustedKey
    status: StatusCache


class Federation:
    """What a gate holds of its city's federation: the verified statement, and per federated city its
    verified trust list and its status lists. Thread-safe for readers while a sync replaces parts."""

    def __init__(self, statement: FederationStatement | None = None) -> None:
        self.statement = statement
        self._trust: dict[str, TrustList] = {}
        self._status: dict[str, StatusCache] = {}
        self._index: dict[bytes, str] = {}
        self._lock = threading.Lock()

    def replace_statement(self, statement: FederationStatement) -> None:
        """A fresher statement: the lists of cities it no longer names are dropped."""
        with self._lock:
            self.statement = statement
            for city in list(self._trust):
                held = statement.cities.get(city)
                if held is None:
                    del self._trust[city]
                    self._status.pop(city, None)
            self._reindex()

    def put_trust_list(self, city: str, trust: TrustList) -> None:
        """A trust list of *city*, already verified with the anchor the statement vouches for."""
        with self._lock:
            if self.statement is None or city not in self.statement.cities:
                raise FederationError(MALFORMED, f"{city} is not in the federation statement")
            self._trust[city] = trust
            self._reindex()

    def load_trust_list(self, city: str, token: str | bytes, *, at: float | None = None) -> TrustList:
        """Verify *token* as *city*'s trust list with the anchor this city's statement vouches for, and keep it.

        Raises :class:`FederationError` (``wrong_anchor``, ``expired``, ``malformed``, ...)."""
        statement = self.statement
        entry = statement.cities.get(city) if statement is not None else None
        if entry is None:
            raise FederationError(MALFORMED, f"{city} is not in the federation statement")
        now = time.time() if at is None else at
        try:
            try:
                trust = TrustList.load(token, entry.anchor, at=now)  # type: ignore[arg-type]
            except TrustListError as exc:
                if "not valid yet" not in str(exc):
                    raise
                # signed a moment ago by a clock a little ahead of ours (as for statements and status lists)
                trust = TrustList.load(token, entry.anchor, at=now + MAX_CLOCK_AHEAD)  # type: ignore[arg-type]
                if trust.expired(now):
                    raise
        except TrustListError as exc:
            text = str(exc)
            reason = (WRONG_ANCHOR if "signature" in text else EXPIRED if "expired" in text else MALFORMED)
            raise FederationError(reason, f"trust list of {city}: {text}") from None
        if trust.city is not None and trust.city != city:
            raise FederationError(WRONG_ANCHOR, f"trust list of {city} names city {trust.city}")
        held = self._trust.get(city)
        if held is not None and held.issued_at > trust.issued_at:  # an older list never replaces a newer one
            return held
        self.put_trust_list(city, trust)
        return trust

    def _reindex(self) -> None:
        index: dict[bytes, str] = {}
        for city, trust in self._trust.items():
            for kid in trust.keys:
                index.setdefault(kid, city)
        self._index = index

    def trust_list(self, city: str) -> TrustList | None:
        return self._trust.get(city)

    def status(self, city: str) -> StatusCache:
        """The status lists held of *city* (an empty cache at first)."""
        with self._lock:
            cache = self._status.get(city)
            if cache is None:
                cache = self._status[city] = StatusCache()
            return cache

    def locate(self, kid: bytes) -> Located | None:
        """The federated city whose trust list holds *kid*, with its terms as the current statement says."""
        city = self._index.get(kid)
        statement = self.statement
        if city is None or statement is None:
            return None
        entry, trust = statement.cities.get(city), self._trust.get(city)
        if entry is None or trust is None:
            return None
        key = trust.get(kid)
        if key is None:
            return None
        return Located(entry, trust, key, self.status(city))

    def describe(self) -> dict[str, Any]:
        statement = self.statement
        if statement is None:
            return {"statement": None, "cities": {}}
        return {
            "statement": {"city": statement.city, "issued_at": statement.issued_at,
                          "expires_at": statement.expires_at, "seq": statement.seq},
            "cities": {c: {"kinds": sorted(e.kinds), "scenes": sorted(e.scenes), "valid_until": e.valid_until,
                           "trust_list_expires_at": (t.expires_at if (t := self._trust.get(c)) else None)}
                       for c, e in statement.cities.items()},
        }


__all__ = [
    "FEDERATED_KINDS", "FEDERATION_TYPE", "FederatedCity", "Federation", "FederationError", "FederationStatement",
    "Located", "sign_statement", "statement_claims",
]
