"""The signed trust list: which issuer keys a gate accepts, for which kinds, and until when.

Wire form: a compact JWS (RFC 7515) with header ``typ: trustlist+jwt`` and ``alg: ES256`` (or ``SM2SM3``
for a city whose anchor signs with SM2: the pinned anchor key decides which, never the list's header),
signed by the trust anchor, whose public key the gate holds pinned (never taken from the
list itself). Claims:

``iss`` anchor name, ``city`` the id of the city whose anchor signs the list (``[a-z0-9-]{1,64}``; a list
signed before lists named their city has none), ``iat``/``exp`` validity of the list, ``seq`` a counter that
only grows, and ``keys``: a list of entries ``{kid, issuer, issuer_name, kinds, cert_types, org_code, nbf,
exp, alg, jwk}`` with ``kid`` the base64url of the 8-byte key id (which must equal the key's derived id),
``alg`` the JWS name of the one algorithm the key signs with (``ES256``, ``EdDSA`` or ``SM2SM3``; it must be
the algorithm of the key's type; a list without it means the key's type) and ``org_code`` (a department's
only) the issuer code its certificate identifiers carry.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from sdk import sm2
from sdk.claims import CITY_ID
from sdk.cose import ALG_NAMES
from sdk.keys import PublicKey, TrustedKey, alg_for_key, b64u_decode, key_id, load_public_pem, public_key_from_jwk

TRUST_LIST_TYPE = "trustlist+jwt"
#: An issuer code inside a certificate identifier (GB/T 36904 part: 1 to 32 characters 0-9, A-Z).
_ORG_CODE = re.compile(r"^[0-9A-Z]{1,32}\Z")
MAX_TRUST_LIST_BYTES = 1_000_000


class TrustListError(ValueError):
    """A trust list that must not be used: wrongly signed, expired, or not to the specification."""


Anchor = ec.EllipticCurvePublicKey | sm2.Sm2PublicKey


def load_anchor(pem: bytes | str | Path) -> Anchor:
    """Load the pinned trust-anchor public key (P-256, or SM2 for a city that signs with SM2) from PEM bytes,
    text or a file path."""
    if isinstance(pem, Path):
        pem = pem.read_bytes()
    if isinstance(pem, str):
        pem = pem.encode()
    try:
        key: PublicKey = load_public_pem(pem)
    except ValueError as exc:
        raise TrustListError(f"trust anchor is not a PEM public key: {exc}") from None
    if isinstance(key, sm2.Sm2PublicKey):
        return key
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TrustListError("trust anchor must be a P-256 or SM2 public key")
    return key


@dataclass(frozen=True)
class TrustList:
    """A verified trust list, indexed by key id."""

    keys: Mapping[bytes, TrustedKey]
    issued_at: int
    expires_at: int
    seq: int
    anchor: str
    #: The city whose anchor signed the list (its ``city`` member): a gate's own city, which the codes of
    #: its keys name in their ``iss``. None for a list signed before lists named their city.
    city: str | None = None

    def expired(self, at: float) -> bool:
        return at >= self.expires_at

    def get(self, kid: bytes) -> TrustedKey | None:
        return self.keys.get(kid)

    @classmethod
    def from_keys(
        cls, keys: Iterable[TrustedKey], *, issued_at: int, expires_at: int, seq: int = 0, anchor: str = "local",
        city: str | None = None,
    ) -> TrustList:
        """An in-memory list built from keys already trusted (the service's own view)."""
        index: dict[bytes, TrustedKey] = {}
        for key in keys:
            if key.kid in index:
                raise TrustListError(f"duplicate key id {key.kid.hex()}")
            index[key.kid] = key
        if city is not None and not CITY_ID.match(city):
            raise TrustListError(f"city id {city!r} is not 1 to 64 of a-z, 0-9 and -")
        return cls(keys=index, issued_at=issued_at, expires_at=expires_at, seq=seq, anchor=anchor, city=city)

    @classmethod
    def load(
        cls, token: str | bytes, anchor: Anchor, *, at: float | None = None, leeway: int = 0
    ) -> TrustList:
        """Verify *token* with the pinned *anchor* key and return the list.

        Raises :class:`TrustListError` with a message a person can act on when the list
        is wrongly signed, expired, not yet valid or malformed.
        """
        now = time.time() if at is None else at
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise TrustListError("trust list is not ASCII text") from None
        token = token.strip()
        if len(token) > MAX_TRUST_LIST_BYTES:
            raise TrustListError("trust list is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TrustListError(f"trust list is not a JWS: {exc}") from None
        if header.get("typ") != TRUST_LIST_TYPE:
            raise TrustListError(f"trust list has type {header.get('typ')!r}, expected {TRUST_LIST_TYPE!r}")
        if set(header) - {"typ", "alg", "kid"}:
            raise TrustListError("trust list header carries unexpected parameters")
        algorithm = ALG_NAMES[alg_for_key(anchor)]  # the pinned anchor's, whatever the header says
        if header.get("alg") != algorithm:
            raise TrustListError(f"trust list is signed with {header.get('alg')!r}; the anchor signs {algorithm}")
        if isinstance(anchor, sm2.Sm2PublicKey) and not sm2.available():
            raise TrustListError(f"trust list is signed with SM2: {sm2.INSTALL_HINT}")
        try:
            claims = jwt.decode(
                token,
                key=anchor,  # type: ignore[arg-type]
                algorithms=[algorithm],
                options={"require": ["iat", "exp", "iss"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidSignatureError:
            raise TrustListError("trust list signature does not verify with the trust anchor") from None
        except jwt.PyJWTError as exc:
            raise TrustListError(f"trust list rejected: {exc}") from None
        iat, exp = claims["iat"], claims["exp"]
        if type(iat) is not int or type(exp) is not int:
            raise TrustListError("trust list iat and exp must be integers")
        if now >= exp + leeway:
            raise TrustListError(
                f"trust list expired at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(exp))}; fetch a fresh one"
            )
        if iat > now + leeway:
            raise TrustListError("trust list is not valid yet (issued in the future; check the clock)")
        entries = claims.get("keys")
        if not isinstance(entries, list):
            raise TrustListError("trust list has no key array")
        keys = [_parse_entry(entry, i) for i, entry in enumerate(entries)]
        seq = claims.get("seq", 0)
        city = claims.get("city")
        if city is not None and (type(city) is not str or not CITY_ID.match(city)):
            raise TrustListError("trust list city must be 1 to 64 of a-z, 0-9 and -")
        return cls.from_keys(
            keys, issued_at=iat, expires_at=exp, seq=seq if type(seq) is int else 0, anchor=str(claims["iss"]),
            city=city,
        )

    @classmethod
    def load_file(cls, path: str | Path, anchor: Anchor, *, at: float | None = None) -> TrustList:
        try:
            text = Path(path).read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrustListError(f"cannot read trust list {path}: {exc}") from None
        return cls.load(text, anchor, at=at)


def _parse_entry(entry: Any, index: int) -> TrustedKey:
    where = f"trust list key #{index}"
    if not isinstance(entry, dict):
        raise TrustListError(f"{where} is not an object")
    try:
        kid = b64u_decode(entry["kid"])
        public_key = public_key_from_jwk(entry["jwk"])
        nbf, exp = entry["nbf"], entry["exp"]
        issuer = entry["issuer"]
        kinds = entry.get("kinds", [])
        cert_types = entry.get("cert_types", [])
        org_code = entry.get("org_code")
        alg = alg_for_key(public_key)
    except (KeyError, ValueError, TypeError) as exc:
        raise TrustListError(f"{where} is malformed: {exc}") from None
    if type(nbf) is not int or type(exp) is not int or not isinstance(issuer, str):
        raise TrustListError(f"{where} has wrong field types")
    for name, names in (("kinds", kinds), ("cert_types", cert_types)):
        if not isinstance(names, list) or not all(isinstance(k, str) for k in names):
            raise TrustListError(f"{where} {name} must be a list of names")
    if org_code is not None and (not isinstance(org_code, str) or not _ORG_CODE.match(org_code)):
        raise TrustListError(f"{where} org_code must be 1 to 32 characters 0-9 or A-Z")
    if entry.get("alg", ALG_NAMES[alg]) != ALG_NAMES[alg]:
        raise TrustListError(f"{where}: alg {entry.get('alg')!r} is not that of its key ({ALG_NAMES[alg]})")
    if kid != key_id(public_key):
        raise TrustListError(f"{where}: key id {entry['kid']} does not match its key")
    return TrustedKey(
        kid=kid,
        issuer=issuer,
        public_key=public_key,
        alg=alg,
        not_before=nbf,
        not_after=exp,
        kinds=frozenset(kinds),
        issuer_name=str(entry.get("issuer_name", "")),
        cert_types=frozenset(cert_types),
        org_code=org_code,
    )


def describe(trust: TrustList) -> dict[str, Any]:
    """A JSON-friendly summary (no key material)."""
    return {
        "anchor": trust.anchor,
        "city": trust.city,
        "seq": trust.seq,
        "issued_at": trust.issued_at,
        "expires_at": trust.expires_at,
        "keys": [
            {"kid": k.kid.hex(), "issuer": k.issuer, "alg": k.alg_name, "kinds": sorted(k.kinds),
             "cert_types": sorted(k.cert_types), "org_code": k.org_code,
             "nbf": k.not_before, "exp": k.not_after}
            for k in trust.keys.values()
        ],
    }


__all__ = ["TRUST_LIST_TYPE", "Anchor", "TrustList", "TrustListError", "describe", "load_anchor"]
