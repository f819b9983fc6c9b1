"""Ride codes made on the phone, offline: the parts of a ride code and the checks on them.

A ride code (kind ``ride``, docs/rides.md) is a COSE_Sign1 signed by a key the phone holds (the device
key, P-256, never leaving the phone's WebCrypto store), with no key id in its header. Its payload names
the generation time, a random nonce, and a *ride credential*: a COSE_Sign1 of kind ``ridecred`` signed by
the transit account platform, whose key is in the trust list. The credential certifies the device key
together with the pseudonymous account, the card type, the per-ride fare limit, the status-list index and
the validity of a code in seconds; its own expiry is the authorisation expiry. A gate checks both
signatures offline, as the national transport QR standard does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from sdk.claims import (
    CARD_TYPES,
    CLAIM_CREDENTIAL,
    CLAIM_CTI,
    CLAIM_IAT,
    CLAIM_KIND,
    CLAIM_RIDE,
    KIND_IDS,
    RIDE_CARD_TYPE,
    RIDE_DEVICE_KEY,
    RIDE_FARE_LIMIT,
    RIDE_STATUS_INDEX,
    RIDE_VALIDITY,
    Claims,
    ClaimsError,
)
from sdk.cose import CoseError, loads_exact

#: A credential is a few hundred bytes at most; anything longer is not one of ours.
MAX_CREDENTIAL_BYTES = 512
#: The longest validity a credential may give a code (seconds).
MAX_CODE_VALIDITY = 300
NONCE_MIN, NONCE_MAX = 8, 16
_RIDE_CODE_KEYS = frozenset((CLAIM_KIND, CLAIM_IAT, CLAIM_CTI, CLAIM_CREDENTIAL))


@dataclass(frozen=True, slots=True)
class RideCode:
    """The payload of a ride code, not yet verified."""

    generated_at: int
    nonce: bytes
    credential: bytes


@dataclass(frozen=True, slots=True)
class RideCredential:
    """What a verified credential certifies."""

    account: bytes
    credential_id: bytes
    issued_at: int
    expires_at: int
    device_key: ec.EllipticCurvePublicKey
    card_type: str
    fare_limit: int
    status_index: int
    validity: int


def parse_ride_code(payload: bytes) -> RideCode:
    """The payload of a ride code: exactly kind, iat, cti (the nonce) and the credential."""
    try:
        claims = loads_exact(payload)
    except CoseError as exc:
        raise ClaimsError(str(exc)) from None
    if not isinstance(claims, Mapping) or set(claims) != _RIDE_CODE_KEYS:
        raise ClaimsError("a ride code holds exactly kind, iat, cti and the credential")
    if claims[CLAIM_KIND] != KIND_IDS["ride"] or type(claims[CLAIM_KIND]) is not int:
        raise ClaimsError("a code signed by a device key must be a ride code")
    iat, nonce, credential = claims[CLAIM_IAT], claims[CLAIM_CTI], claims[CLAIM_CREDENTIAL]
    if type(iat) is not int or iat <= 0:
        raise ClaimsError("iat must be a positive integer")
    if not isinstance(nonce, bytes) or not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise ClaimsError(f"cti must be {NONCE_MIN} to {NONCE_MAX} bytes")
    if not isinstance(credential, bytes) or not 0 < len(credential) <= MAX_CREDENTIAL_BYTES:
        raise ClaimsError("the credential must be a byte string of at most 512 bytes")
    return RideCode(generated_at=iat, nonce=nonce, credential=credential)


@lru_cache(maxsize=4096)
def device_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a compressed point (cached: decompressing costs a third of a verify)."""
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def parse_credential(claims: Claims) -> RideCredential:
    """The ride claims of a verified ``ridecred`` claims set."""
    body: Any = claims.extra.get(CLAIM_RIDE)
    if claims.kind != "ridecred" or not isinstance(body, Mapping):
        raise ClaimsError("a ride credential carries its ride claim")
    if claims.subject is None or len(claims.subject) != 10:
        raise ClaimsError("a ride credential names its account (10 bytes)")
    if set(body) != {RIDE_DEVICE_KEY, RIDE_CARD_TYPE, RIDE_FARE_LIMIT, RIDE_STATUS_INDEX, RIDE_VALIDITY}:
        raise ClaimsError("a ride claim holds exactly device key, card type, fare limit, status index, validity")
    point, card, limit = body[RIDE_DEVICE_KEY], body[RIDE_CARD_TYPE], body[RIDE_FARE_LIMIT]
    index, validity = body[RIDE_STATUS_INDEX], body[RIDE_VALIDITY]
    if not isinstance(point, bytes) or len(point) != 33 or point[0] not in (2, 3):
        raise ClaimsError("device key must be a compressed P-256 point (33 bytes)")
    if type(card) is not int or card not in CARD_TYPES:
        raise ClaimsError(f"unknown card type {card!r}")
    if type(limit) is not int or limit < 0:
        raise ClaimsError("fare limit must be a non-negative integer (cents)")
    if type(index) is not int or index < 0:
        raise ClaimsError("status index must be a non-negative integer")
    if type(validity) is not int or not 0 < validity <= MAX_CODE_VALIDITY:
        raise ClaimsError(f"code validity must be 1 to {MAX_CODE_VALIDITY} seconds")
    try:
        key = device_key(point)
    except ValueError:
        raise ClaimsError("device key is not a point on P-256") from None
    return RideCredential(
        account=claims.subject, credential_id=claims.code_id, issued_at=claims.issued_at,
        expires_at=claims.expires_at, device_key=key, card_type=CARD_TYPES[card], fare_limit=limit,
        status_index=index, validity=validity,
    )


def replay_id(credential: RideCredential, code: RideCode) -> bytes:
    """The id a replay guard keeps for a ride code: the credential's id and the code's nonce, both signed."""
    return credential.credential_id + code.nonce
