"""Ride credentials (signed by the transit account platform) and ride codes (signed on the phone).

:func:`issue_credential` is what the service does when a phone registers its device key or renews its
authorisation. :func:`make_ride_code` is what the phone does by itself, offline, every refresh: the page
does the same in JavaScript (codeservice/static/rides.js); this Python form serves the tests, the bench and
``citycode ride codes`` (a software phone for trying gates without a browser). Format: docs/rides.md.
"""

from __future__ import annotations

import os
import time

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from issuers.codes import cose_sign, encode_claims, sign_payload, to_text
from issuers.keyring import Signer
from sdk.claims import (
    CARD_TYPE_IDS,
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
)
from sdk.ride import MAX_CODE_VALIDITY

NONCE_LENGTH = 8


def compressed_point(public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The 33-byte compressed SEC1 form of a P-256 public key."""
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError("device keys are P-256")
    return public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)


def issue_credential(
    signer: Signer,
    *,
    account: bytes,
    device_key: ec.EllipticCurvePublicKey,
    card_type: str,
    fare_limit: int,
    status_index: int,
    validity: int,
    lifetime: int,
    credential_id: bytes | None = None,
    now: float | None = None,
) -> bytes:
    """The untagged COSE_Sign1 bytes of a ride credential valid *lifetime* seconds from *now*."""
    if card_type not in CARD_TYPE_IDS:
        raise ValueError(f"unknown card type {card_type!r}")
    if not 0 < validity <= MAX_CODE_VALIDITY:
        raise ValueError(f"code validity must be 1 to {MAX_CODE_VALIDITY} seconds")
    if fare_limit < 0 or status_index < 0 or lifetime <= 0 or len(account) != 10:
        raise ValueError("fare limit and status index must not be negative, lifetime positive, account 10 bytes")
    issued = int(time.time() if now is None else now)
    ride = {
        RIDE_DEVICE_KEY: compressed_point(device_key),
        RIDE_CARD_TYPE: CARD_TYPE_IDS[card_type],
        RIDE_FARE_LIMIT: fare_limit,
        RIDE_STATUS_INDEX: status_index,
        RIDE_VALIDITY: validity,
    }
    payload = encode_claims("ridecred", issued_at=issued, expires_at=issued + lifetime, subject=account,
                            code_id=credential_id, extra={CLAIM_RIDE: ride}, city=signer.city)
    return sign_payload(signer, payload, tagged=False)  # untagged inside a ride code: one byte less


def encode_ride_payload(credential: bytes, *, generated_at: int, nonce: bytes) -> bytes:
    """The ride code's claims in deterministic CBOR (the page builds the same bytes)."""
    return cbor2.dumps(
        {CLAIM_KIND: KIND_IDS["ride"], CLAIM_IAT: generated_at, CLAIM_CTI: nonce, CLAIM_CREDENTIAL: credential},
        canonical=True,
    )


def make_ride_code(
    device_private_key: ec.EllipticCurvePrivateKey, credential: bytes, *, now: float | None = None,
    nonce: bytes | None = None,
) -> str:
    """A fresh ride code: the credential and the time, signed with the device key (what the phone does)."""
    payload = encode_ride_payload(
        credential, generated_at=int(time.time() if now is None else now),
        nonce=nonce if nonce is not None else os.urandom(NONCE_LENGTH),
    )
    return to_text(cose_sign(device_private_key, payload))
