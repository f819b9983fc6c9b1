"""Signing citycodes: claims as CBOR, in a COSE_Sign1, base45 behind the ``CC1:`` prefix."""

from __future__ import annotations

import os
import time
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from issuers.keyring import Signer
from sdk import base45, cose, sm2
from sdk.claims import CITY_ID, CLAIM_CTI, CLAIM_EXP, CLAIM_IAT, CLAIM_ISS, CLAIM_KIND, CLAIM_SUB, KIND_IDS
from sdk.verifier import PREFIX

CODE_ID_LENGTH = 8


def cose_sign(private_key: ec.EllipticCurvePrivateKey | sm2.Sm2PrivateKey, payload: bytes, *, kid: bytes = b"",
              tagged: bool = True) -> bytes:
    """A COSE_Sign1 over *payload* with an ES256 key (raw r||s signature, low s) or an SM2 key (alg -70001,
    raw r||s); no kid for a key the payload names."""
    if isinstance(private_key, sm2.Sm2PrivateKey):
        protected = cose.encode_protected(cose.ALG_SM2, kid)
        return cose.assemble(protected, payload, private_key.sign(cose.sig_structure(protected, payload)),
                             tagged=tagged)
    protected = cose.encode_protected(cose.ALG_ES256, kid)
    der = private_key.sign(cose.sig_structure(protected, payload), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)  # cryptography gives s or n - s at random: write the low one
    return cose.assemble(protected, payload, cose.low_s(r.to_bytes(32, "big") + s.to_bytes(32, "big")),
                         tagged=tagged)


def sign_payload(signer: Signer, payload: bytes, *, tagged: bool = True) -> bytes:
    """A COSE_Sign1 over *payload* with the signer's key (ES256 or SM2, as the key is), naming its key id."""
    return cose_sign(signer.private_key, payload, kid=signer.kid, tagged=tagged)


def encode_claims(
    kind: str, *, issued_at: int, expires_at: int, subject: bytes | None = None, code_id: bytes | None = None,
    extra: dict[int, Any] | None = None, city: str | None = None,
) -> bytes:
    """The claims set in deterministic CBOR; *city* (the signer's, always given when a city signs) is the
    ``iss`` claim."""
    claims: dict[int, Any] = {
        CLAIM_KIND: KIND_IDS[kind],
        CLAIM_IAT: issued_at,
        CLAIM_EXP: expires_at,
        CLAIM_CTI: code_id if code_id is not None else os.urandom(CODE_ID_LENGTH),
    }
    if city is not None:
        if not CITY_ID.match(city):
            raise ValueError(f"not a city id: {city!r}")
        claims[CLAIM_ISS] = city
    if subject is not None:
        claims[CLAIM_SUB] = subject
    if extra:
        claims.update(extra)
    return cbor2.dumps(claims, canonical=True)


def to_text(cose_bytes: bytes) -> str:
    return PREFIX + base45.b45encode(cose_bytes)


def issue_code(
    signer: Signer, kind: str, *, subject: bytes | None, lifetime: int, now: float | None = None,
    extra: dict[int, Any] | None = None,
) -> str:
    """Sign one code of *kind* valid for *lifetime* seconds from *now*; return its text."""
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    issued_at = int(time.time() if now is None else now)
    payload = encode_claims(kind, issued_at=issued_at, expires_at=issued_at + lifetime, subject=subject, extra=extra,
                            city=signer.city)
    return to_text(sign_payload(signer, payload))
