"""Building and signing the trust list that gates load (format: sdk/trustlist.py, docs/codes.md)."""

from __future__ import annotations

import time

import jwt

from issuers.keyring import Keyring
from sdk.keys import b64u_encode, public_key_to_jwk
from sdk.trustlist import TRUST_LIST_TYPE, TrustList

ANCHOR_NAME = "citycode-trust-anchor"


def trust_list_claims(keyring: Keyring, *, now: float, validity: int) -> dict:
    issued = int(now)
    expires = issued + validity
    return {
        "iss": ANCHOR_NAME,
        "iat": issued,
        "exp": expires,
        "seq": issued,
        "keys": [
            {
                "kid": b64u_encode(k.kid),
                "issuer": k.issuer,
                "issuer_name": k.issuer_name,
                "kinds": sorted(k.kinds),
                "cert_types": sorted(k.cert_types),
                "nbf": k.not_before,
                "exp": k.not_after,
                "jwk": public_key_to_jwk(k.public_key),
            }
            for k in keyring.trusted_keys(now, expires)
        ],
    }


def sign_trust_list(keyring: Keyring, *, validity: int, now: float | None = None) -> str:
    """The current trust list as a compact JWS signed by the trust anchor."""
    now = time.time() if now is None else now
    claims = trust_list_claims(keyring, now=now, validity=validity)
    return jwt.encode(claims, keyring.anchor_private(), algorithm="ES256", headers={"typ": TRUST_LIST_TYPE})


def current_trust_list(keyring: Keyring, *, validity: int, now: float | None = None) -> TrustList:
    """The same list, in memory, for the service's own online verification."""
    now = time.time() if now is None else now
    issued = int(now)
    return TrustList.from_keys(
        keyring.trusted_keys(now, issued + validity), issued_at=issued, expires_at=issued + validity, seq=issued,
        anchor=ANCHOR_NAME,
    )
