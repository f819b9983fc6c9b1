"""Building and signing the trust list that gates load (format: sdk/trustlist.py, docs/codes.md)."""

from __future__ import annotations

import time
from typing import Any

import jwt

from issuers.keyring import Keyring
from sdk.cose import ALG_NAMES
from sdk.keys import TrustedKey, alg_for_key, b64u_encode, public_key_to_jwk
from sdk.trustlist import TRUST_LIST_TYPE, TrustList

ANCHOR_NAME = "citycode-trust-anchor"


def trust_list_claims(keyring: Keyring, *, now: float, validity: int) -> dict:
    issued = int(now)
    expires = issued + validity
    return {
        "iss": ANCHOR_NAME,
        "city": keyring.city,
        "iat": issued,
        "exp": expires,
        "seq": issued,
        "keys": [_entry(k) for k in keyring.trusted_keys(now, expires)],
    }


def _entry(key: TrustedKey) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kid": b64u_encode(key.kid),
        "issuer": key.issuer,
        "issuer_name": key.issuer_name,
        "kinds": sorted(key.kinds),
        "cert_types": sorted(key.cert_types),
        "nbf": key.not_before,
        "exp": key.not_after,
        "alg": key.alg_name,
        "jwk": public_key_to_jwk(key.public_key),
    }
    if key.org_code is not None:  # a department: the issuer code of its certificate identifiers
        entry["org_code"] = key.org_code
    return entry


def sign_trust_list(keyring: Keyring, *, validity: int, now: float | None = None) -> str:
    """The current trust list as a compact JWS signed by the trust anchor."""
    now = time.time() if now is None else now
    claims = trust_list_claims(keyring, now=now, validity=validity)
    anchor = keyring.anchor_private()  # ES256 or SM2SM3, as the anchor key is
    return jwt.encode(claims, anchor, algorithm=ALG_NAMES[alg_for_key(anchor.public_key())],  # type: ignore[arg-type]
                      headers={"typ": TRUST_LIST_TYPE})


def current_trust_list(keyring: Keyring, *, validity: int, now: float | None = None) -> TrustList:
    """The same list, in memory, for the service's own online verification."""
    now = time.time() if now is None else now
    issued = int(now)
    return TrustList.from_keys(
        keyring.trusted_keys(now, issued + validity), issued_at=issued, expires_at=issued + validity, seq=issued,
        anchor=ANCHOR_NAME, city=keyring.city,
    )


class KeyringKeys:
    """The keyring's public side as a key source for online verification (``verifiers.online.KeySource``):
    its trust list, rebuilt when the keyring changes, valid *validity* seconds."""

    def __init__(self, keyring: Keyring, *, validity: int) -> None:
        self._keyring = keyring
        self._validity = validity

    def version(self) -> object:
        return self._keyring.version()

    def trust_list(self, now: float) -> TrustList:
        return current_trust_list(self._keyring, validity=self._validity, now=now)
