"""The claims of a citycode: a CWT claims set (RFC 8392) with one private claim, the kind.

    1 (iss)   text         the issuing city's id (``CITY_ID``: 1 to 64 of a-z, 0-9, -); written in every code
                           a city signs, optional when parsing so that codes made before it still verify
    2 (sub)   byte string  pseudonymous subject (10 random bytes for a resident)
    4 (exp)   integer      expiry, seconds since the epoch
    6 (iat)   integer      issue time, seconds since the epoch
    7 (cti)   byte string  unique code id, 8 to 16 bytes (the replay guard's key)
    -65537    integer      kind of code (see ``KINDS``)

Kinds may add claims of their own; the common ones above are checked here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdk.certid import CertificateId, IdentifierError
from sdk.cose import CoseError, loads_exact

CLAIM_ISS = 1
CLAIM_SUB = 2
CLAIM_EXP = 4
CLAIM_IAT = 6
CLAIM_CTI = 7
CLAIM_KIND = -65537

#: Kind numbers on the wire and their names. Numbers are never reused. ``id`` is the resident's
#: identity code; ``cert`` a certificate shown by its holder; ``ride`` a ride code the phone makes
#: and signs itself (docs/rides.md); ``ridecred`` the ride credential inside it, signed by the transit
#: account platform, which is never shown on its own; ``card`` a printed card (实体卡), a long-lived code a
#: service window prints for a resident without a smartphone (docs/without-a-smartphone.md); ``venue`` the
#: long-lived code a venue posts for residents to scan when they check in (docs/venues.md).
KINDS: dict[int, str] = {1: "id", 2: "cert", 3: "ride", 4: "ridecred", 5: "card", 6: "venue"}
KIND_IDS: dict[str, int] = {name: number for number, name in KINDS.items()}

SUBJECT_LENGTH = 10
_COMMON = frozenset((CLAIM_KIND, CLAIM_IAT, CLAIM_EXP, CLAIM_CTI, CLAIM_SUB, CLAIM_ISS))
#: A city's id, in a code's ``iss``, a trust list's ``city`` and a federation statement: 1 to 64 of a-z, 0-9 and -,
#: not starting or ending with -.
CITY_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?\Z")


class ClaimsError(ValueError):
    """The payload is not a claims set as this product defines it."""


def subject_to_text(sub: bytes) -> str:
    """The printable pseudonymous id: lowercase base32 without padding (16 characters for 10 bytes)."""
    if len(sub) == SUBJECT_LENGTH and type(sub) is bytes:  # a resident's: 80 bits, eight 10-bit pairs
        n = int.from_bytes(sub, "big")
        pairs = _B32_PAIRS
        return (pairs[n >> 70] + pairs[(n >> 60) & 1023] + pairs[(n >> 50) & 1023] + pairs[(n >> 40) & 1023]
                + pairs[(n >> 30) & 1023] + pairs[(n >> 20) & 1023] + pairs[(n >> 10) & 1023] + pairs[n & 1023])
    return base64.b32encode(sub).decode("ascii").rstrip("=").lower()


_B32_LOWER = "abcdefghijklmnopqrstuvwxyz234567"
#: Every 10-bit value as its two base32 characters (what ``base64.b32encode`` writes, in lower case).
_B32_PAIRS = tuple(a + b for a in _B32_LOWER for b in _B32_LOWER)


def subject_from_text(text: str) -> bytes:
    """Inverse of :func:`subject_to_text`; raise ValueError for anything else."""
    if not isinstance(text, str) or not text or len(text) > 64 or not text.isascii():
        raise ValueError("not a pseudonymous id")
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        raw = base64.b32decode(padded)
    except ValueError:
        raise ValueError("not a pseudonymous id") from None
    if subject_to_text(raw) != text:
        raise ValueError("not a pseudonymous id in canonical form")
    return raw


@dataclass(slots=True)
class Claims:
    kind: str
    issued_at: int
    expires_at: int
    code_id: bytes
    subject: bytes | None
    extra: dict[Any, Any] = field(default_factory=dict)
    #: The city the code names as its issuer (``iss``); None in a code made before codes named their city. A
    #: claim, checked against the city whose trust list holds the signing key (sdk/verifier.py).
    city: str | None = None


def parse_claims(payload: bytes) -> Claims:
    try:
        claims = loads_exact(payload)
    except CoseError as exc:
        raise ClaimsError(str(exc)) from None
    if type(claims) is not dict and not isinstance(claims, Mapping):  # type first: isinstance of an ABC is slow
        raise ClaimsError("claims must be a map")
    kind_no = claims.get(CLAIM_KIND)
    iat, exp, cti = claims.get(CLAIM_IAT), claims.get(CLAIM_EXP), claims.get(CLAIM_CTI)
    sub, iss = claims.get(CLAIM_SUB), claims.get(CLAIM_ISS)
    if type(kind_no) is not int or kind_no not in KINDS:
        raise ClaimsError(f"unknown kind {kind_no!r}")
    if type(iat) is not int or type(exp) is not int or not 0 < iat <= exp:
        raise ClaimsError("iat and exp must be integers with 0 < iat <= exp")
    if not isinstance(cti, bytes) or not 8 <= len(cti) <= 16:
        raise ClaimsError("cti must be 8 to 16 bytes")
    if sub is not None and (not isinstance(sub, bytes) or not 1 <= len(sub) <= 32):
        raise ClaimsError("sub must be 1 to 32 bytes")
    if iss is not None and (type(iss) is not str or not CITY_ID.match(iss)):
        raise ClaimsError("iss must be a city id: 1 to 64 of a-z, 0-9 and -")
    kind = KINDS[kind_no]
    if kind in ("id", "card") and (sub is None or len(sub) != SUBJECT_LENGTH):
        raise ClaimsError(f"an {'identity code' if kind == 'id' else 'printed card'} names its subject")
    extra = (
        {k: v for k, v in claims.items() if k not in _COMMON}
        if len(claims) > len(_COMMON) - (sub is None) - (iss is None)
        else {}
    )
    return Claims(kind=kind, issued_at=iat, expires_at=exp, code_id=cti, subject=sub, extra=extra, city=iss)


#: The private claim of a certificate show code (kind ``cert``): a map with small integer keys.
CLAIM_CERT = -65538
CERT_ID, CERT_TYPE, CERT_HOLDER, CERT_VALID_FROM, CERT_VALID_UNTIL, CERT_STATUS_INDEX, CERT_FIELDS = range(1, 8)
FieldValue = str | int | bool


@dataclass(slots=True)
class CertificateClaims:
    """What a certificate show code says: the certificate's metadata and only the disclosed fields."""

    cert_id: str
    type_code: str
    holder: str
    valid_from: int
    valid_until: int
    status_index: int
    fields: dict[str, FieldValue]
    #: The issuer code inside the identifier (GB/T 36904): the organisation code of the department that
    #: issued it, which must be the signing key's ``org_code``.
    issuer_code: str


_TEXT = frozenset((str,))
_FIELD_TYPES = frozenset((str, int, bool))


def _disclosed_fields_ok(fields: Any) -> bool:
    """Names (text) to text, integers or booleans. Exact types are checked first, in C (what cbor2 decodes);
    only when that fails the general check decides."""
    if type(fields) is dict and _TEXT.issuperset(map(type, fields)) and _FIELD_TYPES.issuperset(
            map(type, fields.values())):
        return True
    return isinstance(fields, Mapping) and all(
        isinstance(k, str) and type(v) in (str, int, bool) for k, v in fields.items())


def holder_to_text(holder: bytes | str) -> str:
    """A resident holder travels as the 10 pid bytes, a company as its credit code text."""
    return subject_to_text(holder) if isinstance(holder, bytes) else holder


def parse_certificate(extra: Mapping[Any, Any]) -> CertificateClaims:
    body = extra.get(CLAIM_CERT)
    if type(body) is not dict and not isinstance(body, Mapping):
        raise ClaimsError("a certificate code carries its certificate claim")
    cert_id, type_code, holder = body.get(CERT_ID), body.get(CERT_TYPE), body.get(CERT_HOLDER)
    valid_from, valid_until, index = body.get(CERT_VALID_FROM), body.get(CERT_VALID_UNTIL), body.get(CERT_STATUS_INDEX)
    fields = body.get(CERT_FIELDS, {})
    if not isinstance(cert_id, str) or not isinstance(type_code, str):
        raise ClaimsError("certificate id and type must be text")
    try:
        ident = CertificateId.parse(cert_id)
    except IdentifierError as exc:
        raise ClaimsError(f"certificate identifier: {exc}") from None
    if ident.type_code != type_code:
        raise ClaimsError("certificate identifier names another type")
    if not isinstance(holder, (bytes, str)) or not holder:
        raise ClaimsError("certificate holder must be bytes (resident) or text (company)")
    if type(valid_from) is not int or type(valid_until) is not int or valid_from > valid_until:
        raise ClaimsError("certificate validity must be integers, from <= until")
    if type(index) is not int or index < 0:
        raise ClaimsError("status index must be a non-negative integer")
    if not _disclosed_fields_ok(fields):
        raise ClaimsError("disclosed fields must map names to text, integers or booleans")
    return CertificateClaims(cert_id, type_code, holder_to_text(holder), valid_from, valid_until, index, dict(fields),
                             ident.issuer_code)


#: The private claim of a ride credential (kind ``ridecred``): a map with small integer keys.
CLAIM_RIDE = -65539
RIDE_DEVICE_KEY, RIDE_CARD_TYPE, RIDE_FARE_LIMIT, RIDE_STATUS_INDEX, RIDE_VALIDITY = range(1, 6)
#: The private claim of a ride code (kind ``ride``): the credential, a COSE_Sign1 as a byte string.
CLAIM_CREDENTIAL = -65540
#: Card types on the wire and their names. Numbers are never reused.
CARD_TYPES: dict[int, str] = {1: "adult", 2: "student", 3: "elderly", 4: "disabled"}
CARD_TYPE_IDS: dict[str, int] = {name: number for number, name in CARD_TYPES.items()}


#: The private claim of a printed card (kind ``card``): a map with small integer keys. The card's id is the
#: code's ``cti`` (one card, one code, printed once); the claim holds what a gate needs besides: the card's entry
#: in the card issuer's status list (revoked the moment the card is reported lost).
CLAIM_CARD = -65545
CARD_STATUS_INDEX = 1


def parse_card(extra: Mapping[Any, Any]) -> int:
    """The status-list index a printed card carries; ClaimsError for anything else."""
    body = extra.get(CLAIM_CARD)
    if type(body) is not dict and not isinstance(body, Mapping):
        raise ClaimsError("a printed card carries its card claim")
    if set(body) != {CARD_STATUS_INDEX}:
        raise ClaimsError("the card claim holds exactly its status index")
    index = body[CARD_STATUS_INDEX]
    if type(index) is not int or index < 0:
        raise ClaimsError("status index must be a non-negative integer")
    return index
#: The private claim of a venue code (kind ``venue``): a map with small integer keys.
CLAIM_VENUE = -65541
VENUE_ID, VENUE_STATUS_INDEX = 1, 2


@dataclass(slots=True)
class VenueClaims:
    """What a venue's posted code says: which venue, and its entry in the venue issuer's status list."""

    venue_id: str
    status_index: int


def parse_venue(extra: Mapping[Any, Any]) -> VenueClaims:
    body = extra.get(CLAIM_VENUE)
    if type(body) is not dict and not isinstance(body, Mapping):
        raise ClaimsError("a venue code carries its venue claim")
    venue_id, index = body.get(VENUE_ID), body.get(VENUE_STATUS_INDEX)
    if not isinstance(venue_id, str) or not 1 <= len(venue_id) <= 64:
        raise ClaimsError("venue id must be 1 to 64 characters of text")
    if type(index) is not int or index < 0:
        raise ClaimsError("status index must be a non-negative integer")
    return VenueClaims(venue_id, index)
